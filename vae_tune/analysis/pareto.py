"""A multi-objective study's Pareto front: which trial to promote from it, and its picture.

Rules: the front's best trial for one objective (`elbo`, `loss` or `probe`), or the `knee`: each
objective scaled to [0, 1] over the front (0 its best value, 1 its worst), the trial nearest to
the ideal point where both are 0. The knee trades one objective for the other evenly.
"""

from __future__ import annotations

import math

import optuna
from matplotlib.figure import Figure
from optuna.trial import FrozenTrial, TrialState

from vae_tune.errors import VaeTuneError

KNEE = "knee"


def pick(study: optuna.Study, objectives: dict[str, int], rule: str) -> tuple[FrozenTrial, str]:
    """The promoted trial of the front and the rule in words. `objectives` maps each
    objective's name to its index among the study's values."""
    front = study.best_trials
    if not front:
        raise VaeTuneError(f"study {study.study_name!r} has no complete trial to promote")
    maximize = [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    if rule in objectives:
        i = objectives[rule]
        best = (max if maximize[i] else min)(front, key=lambda t: t.values[i])
        return best, f"the Pareto front's best {rule} ({len(front)} trials on the front)"
    if rule != KNEE:
        raise VaeTuneError(f"--pick {rule!r}: choose {KNEE} or one of {sorted(objectives)}")

    def distance(trial: FrozenTrial) -> float:
        total = 0.0
        for i, up in enumerate(maximize):
            values = [t.values[i] for t in front]
            low, high = min(values), max(values)
            span = (high - low) or 1.0
            total += ((high - trial.values[i]) if up else (trial.values[i] - low)) ** 2 / span**2
        return math.sqrt(total)

    return min(front, key=distance), (
        f"the knee of the Pareto front ({len(front)} trials): each objective scaled to [0, 1] "
        "over the front, the trial nearest to the ideal point"
    )


def front_figure(study: optuna.Study, metrics: list[str], picked: int | None) -> Figure:
    """Every complete trial by its two objectives; the front joined; the promoted one ringed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    front = sorted(study.best_trials, key=lambda t: t.values[0])
    fig = Figure(figsize=(6.5, 4.8))
    ax = fig.subplots()
    ax.scatter(
        [t.values[0] for t in complete],
        [t.values[1] for t in complete],
        s=18,
        color="0.6",
        label="trials",
    )
    ax.plot(
        [t.values[0] for t in front],
        [t.values[1] for t in front],
        "o-",
        color="tab:red",
        label="Pareto front",
    )
    for trial in front:
        ax.annotate(
            str(trial.number),
            (trial.values[0], trial.values[1]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    chosen = [t for t in complete if t.number == picked]
    if chosen:
        ax.scatter(
            [chosen[0].values[0]],
            [chosen[0].values[1]],
            s=160,
            facecolors="none",
            edgecolors="black",
            label=f"promoted: trial {picked}",
        )
    directions = [d.name.lower() for d in study.directions]
    ax.set_xlabel(f"{metrics[0]} ({directions[0]})")
    ax.set_ylabel(f"{metrics[1]} ({directions[1]})")
    ax.set_title(f"{study.study_name}: Pareto front of {len(complete)} complete trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
