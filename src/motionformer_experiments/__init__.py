"""The paper's experiments in miniature, built on the motionformer library: the synthetic motion benchmark
(``motionformer bench motion``) and the Long Range Arena harness (``motionformer lra ...``)."""
