"""Training: the paper's recipe on one process or many (DDP under torchrun), resumable to the bit.

``train(config)`` holds ``output_dir`` (one run per folder, see ``engine.lock``), builds everything from the
config, resumes from the folder's last checkpoint when its config allows it (see ``engine.resume``), and runs:
AdamW (no weight decay on biases, norms, and position / time / class embeddings), the step or cosine schedule with
optional warm-up (per optimizer step), label smoothing, optional mixup / cutmix, gradient accumulation up to
``train.effective_batch``, gradient clipping, mixed precision on GPUs. Each epoch ends with a
validation (``eval.val_clips`` x ``eval.val_crops`` views) and a checkpoint; mid-epoch checkpoints are written every
``train.checkpoint_every`` steps or ``train.checkpoint_minutes``. A resumed run replays the same data order,
augmentations and random draws, so on the CPU its weights end bit-identical to an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from motionformer.data.datasets.annotations import read_annotations
from motionformer.data.loader import build_loader, set_epoch
from motionformer.data.transforms import normalize_clips
from motionformer.engine import RunError, TrainingStopped, distributed
from motionformer.engine.build import (
    annotation_path,
    build_model,
    build_split,
    input_spec,
    load_finetune,
)
from motionformer.engine.checkpoint import (
    capture_rng,
    load_checkpoint,
    prune_epoch_checkpoints,
    restore_rng,
    save_checkpoint,
)
from motionformer.engine.config import Config, to_dict, to_yaml
from motionformer.engine.evaluate import evaluate, run_test
from motionformer.engine.lock import FolderLockedError, RunLock
from motionformer.engine.metrics import format_metrics_table, head_labels
from motionformer.engine.optim import build_optimizer, build_scheduler
from motionformer.engine.precision import allow_tf32
from motionformer.engine.resume import check_compatible, find_checkpoint, set_aside
from motionformer.engine.step import TrainStep
from motionformer.io import atomic_write
from motionformer.models.motionformer import split_heads
from motionformer.models.weights import WeightsInfo, save_model

log = logging.getLogger(__name__)


class NonFiniteLossError(RunError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------------- pieces


def one_hot_targets(labels: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """Labels (B,) -> smoothed one-hot (B, K): 1 - smoothing + smoothing / K on the class, smoothing / K elsewhere."""
    off = smoothing / num_classes
    return torch.full((labels.shape[0], num_classes), off, device=labels.device).scatter_(
        1, labels[:, None], 1.0 - smoothing + off)


def mix_batch(video: Tensor, targets: dict[str, Tensor], mixup: float, cutmix: float
              ) -> tuple[Tensor, dict[str, Tensor]]:
    """Mixup or cutmix (one of them, chosen at random when both are on) of a clip batch (B, 3, T, H, W) with its
    reversed order; soft ``targets`` (B, K) per head are mixed with the same weight. Draws from torch's generator.

    Cutmix pastes one box of every frame (the same box through time) and uses its actual area as the weight.
    """
    use_cutmix = cutmix > 0 and (mixup <= 0 or bool(torch.rand(()) < 0.5))
    alpha = cutmix if use_cutmix else mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    other = video.flip(0)
    if use_cutmix:
        height, width = video.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        box_h, box_w = int(height * cut), int(width * cut)
        cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
        top, bottom = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
        left, right = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
        video = video.clone()
        video[..., top:bottom, left:right] = other[..., top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    else:
        video = lam * video + (1.0 - lam) * other
    return video, {name: lam * t + (1.0 - lam) * t.flip(0) for name, t in targets.items()}


def compute_loss(logits: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
    """Cross-entropy with soft targets, summed over heads (``split_heads``' dicts; one head is named ``""``)."""
    return sum(F.cross_entropy(logits[name].float(), targets[name]) for name in targets)


@dataclasses.dataclass
class Position:
    """Where a run is: the next micro-batch ``batch`` of ``epoch``, after ``step`` optimizer steps."""

    epoch: int = 0
    batch: int = 0
    step: int = 0


class _StopRequest:
    """SIGINT / SIGTERM set a flag instead of raising, so the loop can stop at a clean point; a second Ctrl-C
    raises KeyboardInterrupt as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stop requested (%s): writing a checkpoint at the next batch", signal.Signals(signum).name)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)


class MetricsLog:
    """``metrics.jsonl`` (one JSON object a line) and TensorBoard scalars when tensorboard is installed."""

    def __init__(self, folder: Path, enabled: bool, resume_step: int | None):
        self.path = folder / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.debug("tensorboard is not installed: metrics go to %s only", self.path)
        else:
            self.writer = SummaryWriter(str(folder / "tensorboard"))

    def _truncate_after(self, step: int) -> None:
        """Drop lines written after ``step`` by a run that was then killed (they are about to be redone)."""
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and _line_step(line) <= step]
        atomic_write(self.path, lambda temp: Path(temp).write_text("".join(f"{line}\n" for line in kept)))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as stream:
            stream.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.writer.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record.get("step", 0))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _line_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError):
        return 0


OOM_ADVICE = ("out of GPU memory at data.batch_size={batch}. Options that help: a smaller data.batch_size with "
              "train.effective_batch={effective} to keep the effective batch; model.grad_checkpointing=true; "
              "train.precision=bf16 (or fp16); Orthoformer attention (model.options.approx=orthoformer).")


# ---------------------------------------------------------------------- the run


class Trainer:
    """One training run; see the module docstring. ``run()`` returns the final metrics."""

    def __init__(self, config: Config, context: distributed.DistributedContext, finetune: str | None = None):
        self.config, self.context = config, context
        self.output = Path(config.output_dir)
        self.checkpoints = self.output / "checkpoints"
        self.finetune = finetune or config.train.finetune
        self.stop = _StopRequest()
        self.lock = RunLock(self.output)

    # ------------------------------------------------------------ set-up

    def _setup(self) -> None:
        config, context = self.config, self.context
        torch.manual_seed(config.seed)  # the same initial weights in every process
        self._build_data_and_model()
        self._build_loader()
        self._build_train_step()
        self._hold_folder()  # nothing is written to the output folder before this
        if config.train.resume == "fresh" and context.is_main:
            set_aside(self.output)
        distributed.barrier()
        self.position = Position()
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.skipped_videos = 0
        self._resume()
        self._wrap()
        # each process draws its own drop-path and mixup randomness from here on
        if self.position.step == 0 and self.position.epoch == 0 and self.position.batch == 0:
            torch.manual_seed(config.seed + 1000 * context.rank + 1)
        # lines after the resumed step, or all lines of a run that never checkpointed, are about to be redone
        self.metrics = MetricsLog(self.output, context.is_main, self.position.step if self._resumed else -1)

    def _build_data_and_model(self) -> None:
        """The class names, the model (on the device, DDP-wrapped under torchrun) and the datasets."""
        config, context = self.config, self.context
        # the training data first: a missing path fails here, before any weights are made
        train_path = annotation_path(config, "train")
        self.class_names = read_annotations(train_path, config.data.root, config.data.format,
                                            frames=config.data.frames).class_names
        self.val_enabled = config.train.eval_every > 0 or config.train.test_at_end
        if self.val_enabled:
            annotation_path(config, "val")
            annotation_path(config, "test")
        model = build_model(config, self.class_names)
        if self.finetune:
            load_finetune(model, self.finetune)
        self.spec = input_spec(config, model, self.class_names)
        self.train_set = build_split(config, "train", self.spec, training=True)
        self.val_set = (build_split(config, "val", self.spec, training=False, num_clips=config.eval.val_clips,
                                    num_crops=config.eval.val_crops)
                        if config.train.eval_every > 0 else None)
        self.model = model.to(context.device)
        self.heads = model.heads

    def _build_loader(self) -> None:
        """The training loader and the accumulation that makes ``train.effective_batch`` from it."""
        config, context = self.config, self.context
        batch = config.data.batch_size
        per_step = batch * context.world_size
        effective = config.train.effective_batch or per_step
        if effective % per_step:
            raise ValueError(f"train.effective_batch={effective} is not a multiple of data.batch_size x processes = "
                             f"{batch} x {context.world_size} = {per_step}")
        self.accumulation = effective // per_step
        self.effective_batch = effective
        self.loader = build_loader(self.train_set, batch, training=True, workers=config.data.workers,
                                   seed=config.seed, distributed=context.distributed or None)
        self.steps_per_epoch = len(self.loader) // self.accumulation
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.train_set)} training clips make no full step of train.effective_batch="
                             f"{effective} clips ({context.world_size} processes x data.batch_size={batch} x "
                             f"{self.accumulation} accumulated)")

    def _build_train_step(self) -> None:
        """AdamW with the schedule (counted in optimizer steps), precision, accumulation and clipping."""
        train, per_epoch = self.config.train, self.steps_per_epoch
        optimizer = build_optimizer(self.model, train.lr, train.weight_decay)
        scheduler = build_scheduler(optimizer, total_steps=train.epochs * per_epoch,
                                    warmup_steps=train.warmup_epochs * per_epoch, schedule=train.schedule,
                                    milestones=[epoch * per_epoch for epoch in train.lr_steps], gamma=train.lr_gamma,
                                    min_ratio=train.min_lr / train.lr)
        self.train_step = TrainStep(self.model, optimizer, scheduler, device=self.context.device,
                                    precision=train.precision, accumulation=self.accumulation,
                                    clip_grad=train.clip_grad)
        if self.train_step.autocast_dtype is None:
            allow_tf32(self.context.device)

    def _wrap(self) -> None:
        """DDP under torchrun (its construction sends the main process's weights to every process), then
        ``torch.compile`` when ``train.compile``; the train step runs the result."""
        module = distributed.wrap(self.model, self.context, ignore=self.model.unused_by_logits())
        if self.config.train.compile:
            module = torch.compile(module)
        self.ddp_model = self.train_step.module = module

    def _hold_folder(self) -> None:
        """Take the output folder's lock on the main process; every process learns whether it could."""
        refusal = None
        if self.context.is_main:
            try:
                self.lock.acquire()
            except FolderLockedError as error:
                refusal = str(error)
        refusal = distributed.broadcast_object(refusal)
        if refusal is not None:
            raise FolderLockedError(refusal)

    def _resume(self) -> None:
        """Continue the folder's run when there is one and this config may continue it (``engine.resume``).

        Only the main process reads the checkpoint (the others may not see its files); it loads the weights, which
        DDP then sends to every process, and sends the rest of the record.
        """
        found, weights = (find_checkpoint(self.checkpoints) if self.context.is_main else None), None
        if found is not None:
            weights = found[1].pop("model")
        found = distributed.broadcast_object(found)
        self._resumed = found is not None
        if found is None:
            return
        path, record = found
        check_compatible(path, record, self.config, class_names=self.class_names,
                         effective_batch=self.effective_batch, steps_per_epoch=self.steps_per_epoch)
        if weights is not None:
            self.model.load_state_dict(weights)
        step = self.train_step
        step.optimizer.load_state_dict(record["optimizer"])
        step.scheduler.load_state_dict(record["scheduler"])
        step.load_scaler(record["scaler"])
        for group in step.optimizer.param_groups:  # this run's rate where train.resume=override changed it
            group["initial_lr"] = self.config.train.lr
        step.scheduler.base_lrs = [self.config.train.lr] * len(step.optimizer.param_groups)
        self.position = Position(epoch=record["epoch"], batch=record["batch"], step=record["step"])
        self.best, self.best_epoch = record.get("best"), record.get("best_epoch")
        self.skipped_videos = record.get("skipped_videos", 0)
        rng = record["rng"]
        restore_rng(rng[self.context.rank] if isinstance(rng, list) and self.context.rank < len(rng) else rng)
        if isinstance(rng, list) and len(rng) != self.context.world_size:
            log.warning("%s was written by %d processes, this run has %d: random draws differ from an "
                        "uninterrupted run", path, len(rng), self.context.world_size)
        log.info("resuming from %s: epoch %d, batch %d, step %d", path, self.position.epoch, self.position.batch,
                 self.position.step)

    # ------------------------------------------------------------ checkpoints

    def _state(self, rng: Any) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.train_step.optimizer.state_dict(),
            "scheduler": self.train_step.scheduler.state_dict(), "scaler": self.train_step.scaler.state_dict(),
            "epoch": self.position.epoch, "batch": self.position.batch, "step": self.position.step,
            "rng": rng, "best": self.best, "best_epoch": self.best_epoch, "config": to_dict(self.config),
            "class_names": self.class_names, "input": self.spec.to_json(), "effective_batch": self.effective_batch,
            "steps_per_epoch": self.steps_per_epoch, "skipped_videos": self.skipped_videos,
        }

    def _save(self, rng: Any, *, epoch_end: bool = False, best: bool = False) -> None:
        """Write last.pt (and epoch / best copies) on the main process; ``rng`` is every process's generators."""
        rng = distributed.all_gather_objects(rng) if self.context.distributed else rng
        if not self.context.is_main:
            return
        state = self._state(rng)
        save_checkpoint(self.checkpoints / "last.pt", state)
        if epoch_end and self.config.train.keep_last > 0:
            save_checkpoint(self.checkpoints / f"epoch-{self.position.epoch:04d}.pt", state)
            prune_epoch_checkpoints(self.checkpoints, self.config.train.keep_last)
        if best:
            save_checkpoint(self.checkpoints / "best.pt", state)
        self._last_save = time.monotonic()

    # ------------------------------------------------------------ the loop

    def _micro_batches(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """The rest of this epoch's micro-batches (those of whole optimizer steps), with their index."""
        usable = self.steps_per_epoch * self.accumulation
        set_epoch(self.loader, self.position.epoch, self.position.batch)
        for index, batch in enumerate(self.loader, start=self.position.batch):
            if index >= usable:
                break
            yield index, batch

    def _inputs(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
        """A micro-batch's clips (normalised on the device when the workers send uint8) and soft targets per head,
        on the device, mixed when mixup or cutmix is on. Nothing here waits for the device."""
        device, train = self.context.device, self.config.train
        video = batch["video"].to(device, non_blocking=True)
        if video.dtype == torch.uint8:
            video = normalize_clips(video, self.spec.mean, self.spec.std)
        labels = {name: value.to(device, non_blocking=True)
                  for name, value in head_labels(batch["label"], self.heads).items()}
        targets = {name: one_hot_targets(labels[name], self.heads[name], train.label_smoothing) for name in labels}
        if train.mixup > 0 or train.cutmix > 0:
            video, targets = mix_batch(video, targets, train.mixup, train.cutmix)
        return video, targets

    def _forward_backward(self, batch: dict[str, Any], sync: bool) -> Tensor:
        """One micro-batch's forward and backward (DDP all-reduces the gradients only when ``sync``); returns its
        loss as a float32 device tensor, unread."""
        video, targets = self._inputs(batch)
        step = self.train_step
        with step.micro_batch(sync):
            with step.autocast():
                logits = self.ddp_model(video)
            loss = compute_loss(split_heads(logits, self.heads), targets)
            step.backward(loss)
        return loss.detach().float()

    def _queue_status(self, loss_sum: Tensor, skipped: int, stop: bool) -> None:
        """Start the all-reduce of the step's summed loss, the stop / checkpoint-due flags and the count of clips
        read from substitutes (``skipped`` on this process), so that every process takes the same decisions; the
        result is read by ``_settle`` without waiting for the steps queued after it."""
        due = self.context.is_main and time.monotonic() - self._last_save >= 60 * self.config.train.checkpoint_minutes
        flags = torch.tensor([float(stop), float(due), float(skipped)])
        if self.context.device.type == "cuda":
            flags = flags.pin_memory()
        status = torch.cat([loss_sum[None], flags.to(self.context.device, non_blocking=True)])
        status = distributed.all_reduce_sum(status).to("cpu", non_blocking=True)
        ready = None
        if self.context.device.type == "cuda":
            ready = torch.cuda.Event()
            ready.record()
        self._pending.append((self.position.step, status, ready))

    def _settle(self, keep_newest: bool) -> tuple[list[float], bool, bool]:
        """Read the queued statuses (all but the newest when ``keep_newest``): (their mean losses over processes,
        whether any process asked to stop, whether a checkpoint is due). Raises ``NonFiniteLossError`` when a loss
        was not finite; no checkpoint is written before every queued status was read, so its weights are never
        saved."""
        losses, stop, due = [], False, False
        while len(self._pending) > int(keep_newest):
            step, status, ready = self._pending.pop(0)
            if ready is not None:
                ready.synchronize()
            loss, stops, dues, skipped = status.tolist()
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"the loss became {loss:g} at epoch {self.position.epoch}, step {step}; training stopped and "
                    f"{self.checkpoints / 'last.pt'} (the last good state) was kept. Try a lower train.lr, "
                    "train.clip_grad=1.0, or train.precision=fp32")
            losses.append(loss / (self.accumulation * self.context.world_size))
            stop, due = stop or stops > 0, due or dues > 0
            self._epoch_skipped += int(skipped)
        return losses, stop, due

    def _progress_bar(self, clips_per_batch: int) -> tqdm:
        position, total = self.position, self.steps_per_epoch * self.accumulation
        return tqdm(total=total * clips_per_batch, initial=position.batch * clips_per_batch, unit="clip",
                    desc=f"epoch {position.epoch + 1}/{self.config.train.epochs}", disable=not self.context.is_main,
                    dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0, leave=False)

    def _stop_now(self, boundary_rng: Any) -> None:
        """Save the state of the last optimizer-step boundary and raise ``TrainingStopped``."""
        self.train_step.optimizer.zero_grad(set_to_none=True)
        self._save(boundary_rng)
        raise TrainingStopped(f"stopped at epoch {self.position.epoch}, batch {self.position.batch}; run the same "
                              "command again to resume")

    def _log_step(self, bar: tqdm, losses: list[float], clips: int, started: float) -> None:
        """The latest known step loss and the learning rate on the progress bar; every ``train.log_every`` steps
        a metrics line with the mean step loss since the last one (``losses`` is then emptied)."""
        position, lr = self.position, self.train_step.lr
        if losses:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.2e}", refresh=False)
        if position.step % self.config.train.log_every == 0:
            seconds = time.monotonic() - started
            self.metrics.write({"kind": "train", "epoch": position.epoch, "step": position.step,
                                "loss": sum(losses) / len(losses), "lr": lr,
                                "clips_per_s": clips / max(seconds, 1e-9)})
            losses.clear()

    def _decision_due(self, index: int) -> bool:
        """Whether the step that ends with micro-batch ``index`` must read every status now: it logs, checkpoints,
        ends the epoch or the run."""
        step, train = self.position.step, self.config.train
        last = index + 1 >= self.steps_per_epoch * self.accumulation
        every = train.checkpoint_every
        return (step % train.log_every == 0 or (every and step % every == 0) or last or self._max_steps_reached()
                or train.checkpoint_minutes == 0)

    def _train_epoch(self) -> None:
        """One epoch's optimizer steps. Host and device meet once per step at most: each step's status is read
        while the next one runs, or at once when the step logs, checkpoints or ends the epoch."""
        config, position = self.config, self.position
        clips_per_batch = config.data.batch_size * self.context.world_size
        bar = self._progress_bar(clips_per_batch)
        boundary_rng = capture_rng()
        losses: list[float] = []
        started, clips = time.monotonic(), 0
        self._epoch_skipped, self._pending = 0, []
        loss_sum, skipped = torch.zeros((), device=self.context.device), 0
        self.ddp_model.train()
        try:
            for index, batch in self._micro_batches():
                sync = (index + 1) % self.accumulation == 0
                loss_sum = loss_sum + self._forward_backward(batch, sync)
                skipped += len(batch["skipped"])
                clips += clips_per_batch
                bar.update(clips_per_batch)
                if not sync:
                    continue
                self._queue_status(loss_sum, skipped, self.stop.requested)
                loss_sum, skipped = torch.zeros((), device=self.context.device), 0
                self.train_step.step()
                position.batch, position.step = index + 1, position.step + 1
                read, stop, due = self._settle(keep_newest=not self._decision_due(index))
                losses += read
                if stop:
                    self._settle(keep_newest=False)
                    self._stop_now(capture_rng())
                boundary_rng = capture_rng()
                self._log_step(bar, losses, clips, started)
                if self._max_steps_reached():
                    break
                every = config.train.checkpoint_every
                if (every and position.step % every == 0) or due:
                    losses += self._settle(keep_newest=False)[0]  # never save weights of an unchecked step
                    self._save(boundary_rng)
        except torch.OutOfMemoryError as error:
            raise RunError(OOM_ADVICE.format(batch=config.data.batch_size, effective=self.effective_batch)
                               ) from error
        finally:
            bar.close()
        self._settle(keep_newest=False)
        self._epoch_seconds = time.monotonic() - started
        self._epoch_clips = clips

    def _validate(self) -> dict[str, float]:
        loader = build_loader(self.val_set, self.config.eval.batch_size or self.config.data.batch_size,
                              training=False, workers=self.config.data.workers, seed=self.config.seed,
                              distributed=self.context.distributed or None, persistent_workers=False)
        metrics, _ = evaluate(self.model, loader, self.context, self.train_step.autocast_dtype,
                              desc=f"val {self.position.epoch + 1}")
        return metrics

    def run(self) -> dict[str, Any]:
        """Set up, train, export and test; returns the summary. The output folder is held throughout."""
        try:
            return self._run()
        finally:
            self.lock.release()

    def _run(self) -> dict[str, Any]:
        started = time.monotonic()
        self._setup()
        config, position = self.config, self.position
        if self.context.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            atomic_write(self.output / "config.yaml", lambda temp: Path(temp).write_text(to_yaml(config)))
        self._last_save = time.monotonic()
        log.info("training %s: %d clips, %d steps/epoch x %d epochs (effective batch %d = %d processes x %d clips x "
                 "%d accumulated) on %s", config.model.name, len(self.train_set), self.steps_per_epoch,
                 config.train.epochs, self.effective_batch, self.context.world_size, config.data.batch_size,
                 self.accumulation, self.context.device)
        with self.stop.installed():
            while position.epoch < config.train.epochs and not self._max_steps_reached():
                self._train_epoch()
                if self._max_steps_reached() and position.batch < self.steps_per_epoch * self.accumulation:
                    self._save(capture_rng())
                    break
                self._end_epoch()
        return self._finish(time.monotonic() - started)

    def _end_epoch(self) -> None:
        """Validate when due (keeping the best top-1), write the epoch's metrics line and checkpoints."""
        config, position = self.config, self.position
        record: dict[str, Any] = {"kind": "epoch", "epoch": position.epoch, "step": position.step,
                                  "seconds": self._epoch_seconds,
                                  "clips_per_s": self._epoch_clips / max(self._epoch_seconds, 1e-9),
                                  "skipped_videos": self._epoch_skipped}
        self.skipped_videos += self._epoch_skipped
        if self._epoch_skipped:
            log.warning("epoch %d: %d clips came from a substitute because their video could not be read (the log "
                        "names each video; 'motionformer data check' lists them all)", position.epoch + 1,
                        self._epoch_skipped)
        is_best = False
        last_epoch = position.epoch + 1 == config.train.epochs
        if self.val_set is not None and ((position.epoch + 1) % config.train.eval_every == 0 or last_epoch):
            metrics = self._validate()
            record.update({f"val_{key}": value for key, value in metrics.items()})
            top1 = metrics.get("top1", metrics.get("action_top1"))
            if top1 is not None and (self.best is None or top1 > self.best):
                self.best, self.best_epoch, is_best = top1, position.epoch + 1, True
            log.info("epoch %d: %s", position.epoch + 1, ", ".join(f"val {k} {v:.2f}" for k, v in metrics.items()))
        self.metrics.write(record)
        position.epoch, position.batch = position.epoch + 1, 0
        self._save(capture_rng(), epoch_end=True, best=is_best)

    def _finish(self, train_seconds: float) -> dict[str, Any]:
        """Export the best weights, test them when asked, and write the summary; returns it."""
        config, position = self.config, self.position
        summary: dict[str, Any] = {"train_seconds": train_seconds}
        summary.update(epochs=position.epoch, steps=position.step, best_val_top1=self.best,
                       best_epoch=self.best_epoch, skipped_videos=self.skipped_videos)
        weights = self._export()
        if config.train.test_at_end and self.val_enabled:
            test_metrics = run_test(config, context=self.context, model=self.model, class_names=self.class_names,
                                    spec=self.spec)
            summary.update({f"test_{key}": value for key, value in test_metrics.items()})
        if self.context.is_main:
            summary["weights"] = str(weights)
            self.metrics.write({"kind": "summary", "step": position.step, **summary})
            log.info("\n%s", format_metrics_table({k: v for k, v in summary.items() if v is not None}))
        self.metrics.close()
        return summary

    def _max_steps_reached(self) -> bool:
        limit = self.config.train.max_steps
        return limit is not None and self.position.step >= limit

    def _export(self) -> Path | None:
        """Load the best weights (if validated) into the model and write ``output_dir/model.safetensors/.json``."""
        best = self.checkpoints / "best.pt"
        if distributed.broadcast_object(self.context.is_main and best.exists()):
            if self.context.is_main:  # other processes may not see the main process's files: it sends them
                self.model.load_state_dict(load_checkpoint(best)["model"])
            distributed.broadcast_tensors(list(self.model.state_dict().values()))
        if not self.context.is_main:
            return None
        config = self.config
        info = WeightsInfo(source=f"motionformer training run ({config.model.name})",
                           architecture=self.model.architecture, input=self.spec,
                           dataset=config.data.name or "custom")
        weights, _ = save_model(self.model, self.output / "model", info)
        return weights


def train(config: Config, finetune: str | None = None) -> dict[str, Any]:
    """Train as ``config`` says (see the module docstring); under torchrun, in every process."""
    context = distributed.setup(config.train.device)
    if not context.is_main:
        logging.getLogger("motionformer").setLevel(logging.WARNING)
    try:
        return Trainer(config, context, finetune).run()
    finally:
        distributed.cleanup()
