"""Honest run semantics: the schedule follows steps, resume does not re-warm, and a NaN
rollback replays differently."""

import numpy as np
import pytest
import torch

from napari_gan.core.data import PairedSet
from napari_gan.core.errors import NapariGanError
from napari_gan.core.families.pix2pix import Pix2PixTrainer
from napari_gan.core.training.base import Budget

CPU = torch.device("cpu")


def trainer_for(toy_pair, cfg, out, budget, seed=0):
    noisy, clean = toy_pair
    data = PairedSet.build([noisy[None]], [clean[None]])
    return Pix2PixTrainer(cfg, data, out, budget, CPU, seed=seed, log_every=1, val_every=1000)


def record_progress(trainer):
    seen = []
    step = trainer.train_step

    def spy(progress):
        seen.append((trainer.step, progress))
        return step(progress)

    trainer.train_step = spy
    return seen


def test_schedule_follows_steps_and_resume_keeps_it(toy_pair, tiny_cfg, tmp_path):
    cfg = tiny_cfg(adv_warmup=0.5)
    whole = trainer_for(toy_pair, cfg, tmp_path / "a", Budget(steps=8))
    seen_whole = record_progress(whole)
    list(whole.run())
    assert [round(p, 6) for _, p in seen_whole] == [round(s / 8, 6) for s in range(8)]

    # the same run stopped at step 3 and resumed: the same schedule, step by step
    first = trainer_for(toy_pair, tiny_cfg(adv_warmup=0.5), tmp_path / "b", Budget(steps=8))
    seen_first = record_progress(first)
    for event in first.run():
        if first.step >= 3:
            first.request_stop()
    second = trainer_for(toy_pair, tiny_cfg(adv_warmup=0.5), tmp_path / "b", Budget(steps=8))
    second.resume_from(tmp_path / "b")
    seen_second = record_progress(second)
    list(second.run())
    assert seen_first + seen_second == seen_whole


def test_time_budget_resume_does_not_warm_up_again(toy_pair, tiny_cfg, tmp_path):
    cfg = tiny_cfg(adv_warmup=0.3)
    run = trainer_for(toy_pair, cfg, tmp_path, Budget(minutes=0.02))
    list(run.run())
    horizon = run.schedule_steps
    assert horizon and run.step > 0
    resumed = trainer_for(toy_pair, tiny_cfg(adv_warmup=0.3), tmp_path, Budget(minutes=0.005))
    resumed.resume_from(tmp_path)
    assert resumed.schedule_steps == pytest.approx(horizon)
    seen = record_progress(resumed)
    events = list(resumed.run())
    # progress continues from where the first run stopped, not from 0 (no second warm-up)
    assert seen and seen[0][1] == pytest.approx(min(1.0, run.step / horizon))
    adversarial = [e for e in events if "d" in e.losses]
    if seen[0][1] >= 0.3:
        assert adversarial or len(events) <= 2


def test_nan_rollback_replays_differently(toy_pair, tiny_cfg, tmp_path):
    """A fault tied to the data drawn at step 5 recurs when the replay draws the same data;
    after a rollback the random stream (and the learning rate) differ, so training recovers."""
    trainer = trainer_for(toy_pair, tiny_cfg(), tmp_path, Budget(steps=12))
    trainer.val_every = 4          # a good state to roll back to at step 4
    step = trainer.train_step
    poisoned = {}

    def faulty(progress):
        if trainer.step == 5:
            draw = repr(trainer.rng.bit_generator.state)
            poisoned.setdefault("draw", draw)
            if draw == poisoned["draw"]:
                return {"l1": float("nan")}
        return step(progress)

    trainer.train_step = faulty
    events = list(trainer.run())
    warnings = [e for e in events if e.kind == "warning"]
    assert len(warnings) == 1 and "rolled back" in warnings[0].message
    assert events[-1].kind == "done" and events[-1].step == 12
    assert trainer.lr_scale == 0.5
    assert trainer.opt_g.param_groups[0]["lr"] < tiny_cfg().lr


def test_nan_every_replay_gives_up_with_a_clear_error(toy_pair, tiny_cfg, tmp_path):
    trainer = trainer_for(toy_pair, tiny_cfg(), tmp_path, Budget(steps=10))
    trainer.train_step = lambda progress: {"l1": float("nan")}
    with pytest.raises(NapariGanError, match="did not recover"):
        list(trainer.run())
