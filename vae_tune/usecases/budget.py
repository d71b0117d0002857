"""The pipeline's budget: `--budget` parsed, and shared out between its four stages from what
an epoch, a command's fixed work and the baselines cost on this machine (measured in seconds by
`pipeline.measure_costs`).

Both promotions are reserved first, then the studies share the rest, ENCODER_SHARE to the
encoder study (at least one full trial). Head trials run the head space's epochs, fewer on
short budgets so that the head study still gets WANTED_HEAD_TRIALS of them. Where the budget
leaves the head study ENSEMBLE_HEAD_TRIALS full trials besides, retrains of the head's
champion with as many seeds as fit, up to ENSEMBLE_MEMBERS, are reserved (their probabilities
averaged); the promotion then trains the seeds that end in time, measured as it goes.
Without retrains (`--no-retrain`) the promotions reserve only their test evaluations: the
champions are the trials' own models, the head's averaged with up to ENSEMBLE_MEMBERS - 1 other
trials' where validation says so, and the time a retrain would take goes to the studies.
`choose_plan` retrains only where that leaves the head's trials their full epochs (long
budgets, fast machines): on shorter ones the retrains' time buys more as head epochs.
`least_budget` is the smallest budget that plan accepts: `--budget least`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from vae_tune.errors import VaeTuneError
from vae_tune.progress import clock

ENCODER_SHARE = 0.25  # of the study time: the head study decides the accuracy, so it gets more
MIN_HEAD_EPOCHS = 3
WANTED_HEAD_TRIALS = 3  # epochs per head trial are cut before the head study gets fewer trials
# Seeds of the champion averaged, each image with its mirror: validation accuracy 93.59 +- 0.05 %
# for three, 93.55 +- 0.14 % for two, against 93.34 +- 0.02 % for one classifier, mirrored
# (benchmarks/ensemble.py, seeds 0-2, Fashion-MNIST). Two seeds buy most of it for one retrain,
# so a machine too slow for three takes two. The retrains are taken from the head study only
# where that keeps this many full-length trials (a study of fewer is mostly random start-ups).
ENSEMBLE_MEMBERS = 3
ENSEMBLE_HEAD_TRIALS = 4
# Promotion retrains on train + validation: 60,000 of 48,000 images by default. The pipeline
# measures it on the data it runs on (`retrain_scale`): 3.4 with --train-size 5000.
RETRAIN_SCALE = 1.25
# Per command beyond its epochs, its data loading and its baselines (all measured): start-up,
# MLflow runs, pictures, the registry, the pt2 export (~10 s on 2 cores).
OVERHEAD_S = 10.0
# The encoder's test evaluation, in encoder epochs: passes of the model over the test split
# that run on the device, as the epochs do (an AE's took 0.3 of an epoch; a VAE's at k = 100
# importance samples, with its density baselines, more). The head's baselines run on the CPU
# whatever the device: they are measured, in seconds.
ENCODER_EVALUATION_EPOCHS = {"ae": 1.0, "vae": 3.0}


LEAST = "least"  # --budget least: the smallest budget this machine needs, measured


def parse_budget(text: str) -> float | None:
    """Seconds from `30m`, `90s`, `1.5h`, `1h30m` or a bare number of minutes; None for
    `least`, which the pipeline works out once it has measured this machine."""
    cleaned = text.strip().lower()
    if cleaned == LEAST:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        seconds = float(cleaned) * 60
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", cleaned)
        if not parts or "".join(f"{n}{u}" for n, u in parts) != cleaned.replace(" ", ""):
            raise VaeTuneError(
                f"--budget {text!r}: give a duration such as 30m, 90s, 1.5h or 1h30m"
            )
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise VaeTuneError(f"--budget {text!r}: the budget must be more than zero")
    return seconds


@dataclass(frozen=True)
class Costs:
    """Seconds measured on this machine: an epoch of each model, loading the data, one fit of
    the baselines; and the epochs a trial runs."""

    encoder_epoch_s: float
    encoder_epochs: int
    head_epoch_s: float
    head_epochs: int  # the head space's own: the most a pipeline runs
    load_s: float = 0.0  # the data, once per command
    encoder_evaluation_epochs: float = ENCODER_EVALUATION_EPOCHS["vae"]
    baselines_s: float = 0.0  # the head study's end and the head promotion fit them
    retrain_scale: float = RETRAIN_SCALE  # a promotion's images against a trial's


def retrain_scale(train_images: int, val_images: int) -> float:
    """How much longer a promotion's epoch runs than a trial's: it trains on train +
    validation, a trial on train alone (and an epoch's cost grows with its images)."""
    return (train_images + val_images) / train_images


@dataclass(frozen=True)
class Plan:
    encoder_study_s: float
    head_epochs: int
    promote_encoder_s: float  # reserved after the encoder study
    promote_head_s: float  # reserved after the head study
    overhead_s: float  # per command: start-up, data, runs, pictures
    baselines_s: float  # the head study's baselines, fitted when it ends
    head_members: int = 1  # seeds of the head's champion averaged (trials': no retrain)
    retrain_scale: float = RETRAIN_SCALE
    retrain: bool = True  # the promotions retrain their champions on train + validation

    @property
    def reserved_s(self) -> float:
        """Everything but the studies: promotions, per-command overheads, the baselines."""
        fixed = 2 * self.overhead_s + self.baselines_s
        return fixed + self.promote_encoder_s + self.promote_head_s

    @property
    def head_tail_s(self) -> float:
        """The head's promotion after its retrains: the test evaluation, the baselines refitted
        on train + validation, the registry and the report."""
        return self.baselines_s * self.retrain_scale + self.overhead_s

    def _members(self) -> str:
        if not self.retrain:
            return f" (no retrains: the trials' own models, up to {self.head_members} averaged)"
        return f" (the head's champion: {self.head_members} seeds)" if self.head_members > 1 else ""

    def describe(self, costs: Costs) -> str:
        return (
            f"encoder study {self.encoder_study_s / 60:.1f} min "
            f"({costs.encoder_epoch_s:.1f} s/epoch, {costs.encoder_epochs} epochs a trial); "
            f"head trials of {self.head_epochs} epochs ({costs.head_epoch_s:.1f} s/epoch); "
            f"{(self.promote_encoder_s + self.promote_head_s) / 60:.1f} min kept for promotions"
            f"{self._members()}, "
            f"{(2 * self.overhead_s + self.baselines_s) / 60:.1f} min for the rest"
        )


def plan_budget(budget_s: float, costs: Costs, retrain: bool = True) -> Plan:
    """Share the budget: both promotions reserved first, then the studies' time split
    ENCODER_SHARE : rest, the encoder study getting at least one full trial. The head's
    champion is an ensemble of the most seeds (up to ENSEMBLE_MEMBERS) that still leave the
    head study ENSEMBLE_HEAD_TRIALS full-length trials; else head trials run the head space's
    epochs, fewer when the head study could not otherwise run WANTED_HEAD_TRIALS of them
    (short budgets, slow machines). Without `retrain` the promotions train nothing, and the
    head's members are its study's own trials: free."""
    full, lowest = costs.head_epochs, min(MIN_HEAD_EPOCHS, costs.head_epochs)
    seeds = [(ENSEMBLE_HEAD_TRIALS, full, m) for m in range(ENSEMBLE_MEMBERS, 1, -1)]
    tries = (seeds if retrain else []) + [
        (wanted, epochs, 1 if retrain else ENSEMBLE_MEMBERS)
        for wanted in (WANTED_HEAD_TRIALS, 1)
        for epochs in range(full, lowest - 1, -1)
    ]
    for wanted, epochs, members in tries:
        plan = _plan(budget_s, costs, epochs, members, retrain)
        if (
            budget_s - plan.reserved_s - plan.encoder_study_s
            >= wanted * epochs * costs.head_epoch_s
        ):
            return plan
    raise VaeTuneError(
        f"--budget {clock(budget_s)} is too small for one trial of each study and both "
        f"promotions on this machine (an encoder epoch takes {costs.encoder_epoch_s:.1f} s, "
        f"a head epoch {costs.head_epoch_s:.1f} s): give at least "
        f"{clock(least_budget(costs, retrain))} (or --budget {LEAST})"
    )


def choose_plan(budget_s: float, costs: Costs, retrain: bool | None = None) -> Plan:
    """The plan with retrains or without, as asked; None: with them only where they leave the
    head's trials their full epochs. At 10 minutes on 2 cores they cut those to 12-16 epochs,
    and the pipeline without them reached 93.53 +- 0.35 % validation accuracy against 92.75
    +- 0.37 %, ahead on each of three seeds (test 92.90 against 92.52; benchmarks/
    budget_split.py, Intel Xeon)."""
    if retrain is not None:
        return plan_budget(budget_s, costs, retrain)
    try:
        plan = plan_budget(budget_s, costs)
    except VaeTuneError:  # retrains do not fit: without them, it may
        return plan_budget(budget_s, costs, retrain=False)
    if plan.head_epochs < costs.head_epochs:
        return plan_budget(budget_s, costs, retrain=False)
    return plan


def _plan(budget_s: float, costs: Costs, head_epochs: int, members: int, retrain: bool) -> Plan:
    if not retrain:  # the head's baselines refitted on the training split alone
        costs = replace(costs, retrain_scale=1.0)
    overhead, promote_encoder = _overhead(costs), _promote_encoder(costs, retrain)
    promote_head = _promote_head(costs, head_epochs, members, retrain)
    reserved = 2 * overhead + costs.baselines_s + promote_encoder + promote_head
    encoder_trial = costs.encoder_epochs * costs.encoder_epoch_s
    encoder_s = max((budget_s - reserved) * ENCODER_SHARE, encoder_trial)
    return Plan(
        encoder_s,
        head_epochs,
        promote_encoder,
        promote_head,
        overhead,
        costs.baselines_s,
        members,
        costs.retrain_scale,
        retrain,
    )


def least_budget(costs: Costs, retrain: bool = True) -> float:
    """The smallest budget `plan_budget` accepts, with 5 % to spare: one encoder trial, one
    head trial of the fewest epochs, both promotions and the overheads."""
    lowest = min(MIN_HEAD_EPOCHS, costs.head_epochs)
    encoder_trial = costs.encoder_epochs * costs.encoder_epoch_s
    head_trial = lowest * costs.head_epoch_s
    # The encoder study takes ENCODER_SHARE of the study time, and at least one trial.
    studies = max(encoder_trial + head_trial, head_trial / (1 - ENCODER_SHARE))
    promotions = _promote_encoder(costs, retrain) + _promote_head(costs, lowest, 1, retrain)
    return 1.05 * (2 * _overhead(costs) + costs.baselines_s + promotions + studies)


def _overhead(costs: Costs) -> float:
    return OVERHEAD_S + costs.load_s


def _promote_encoder(costs: Costs, retrain: bool = True) -> float:
    """The encoder's retrain on train + validation, its test evaluation, and the overhead."""
    retrained = costs.encoder_epochs * costs.encoder_epoch_s * costs.retrain_scale
    evaluation = costs.encoder_evaluation_epochs * costs.encoder_epoch_s
    return (retrained if retrain else 0.0) + evaluation + _overhead(costs)


def _promote_head(costs: Costs, epochs: int, members: int = 1, retrain: bool = True) -> float:
    """The head's retrains on train + validation (one per member), its baselines on them, and
    the overhead. Without retrains: the baselines on the training split, and the members'
    passes over the validation split (as much as one epoch, their choice reads each twice)."""
    if not retrain:
        return costs.head_epoch_s + costs.baselines_s + _overhead(costs)
    retrained = members * epochs * costs.head_epoch_s + costs.baselines_s
    return retrained * costs.retrain_scale + _overhead(costs)
