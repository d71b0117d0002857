"""The MLflow bridge: studies as parent runs, trials as child runs, over an explicit client.

No fluent API (it keeps global state and is not thread-safe): every call names its run id.
Child runs are linked with the `mlflow.parentRunId` tag, which works across processes. Local
stores get an explicit artifact folder beside `mlflow.db`, so nothing lands in a stray `mlruns/`.
This module is the only one that holds an MlflowClient.

Registered models are MLflow Models in the pt2 format (see `export.py`), which MLflow alone loads
and serves; vae-tune reads its own spec and state_dict beside them, so no class path is pinned.
What is loaded from a registered folder, and what refused, is `registry.py`'s; a store that
fails or does not answer is an error naming its address, never "nothing there" (`tracking.rules`).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, Run, RunTag, ViewType
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_ENTITIES_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

from vae_tune.errors import StoreError
from vae_tune.models.graph import GraphEncoder
from vae_tune.models.nets import Autoencoder, Model
from vae_tune.tracking import links
from vae_tune.tracking.export import MAIN, Exported, usage
from vae_tune.tracking.metrics import MetricBuffer, metric_entities
from vae_tune.tracking.registry import (
    UntrustedModelError,
    load_encoder_folder,
    load_model_folder,
)
from vae_tune.tracking.rules import (
    creation_lock,
    filter_literal,
    not_found,
    probe_store,
    reason,
    store_error,
)

# Optuna's terminal trial states and the MLflow run status each one closes its run with.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
PARENT_TAG = "mlflow.parentRunId"


class Tracker:
    """Everything vae-tune writes to MLflow."""

    def __init__(
        self, tracking_uri: str, artifact_root: Path | None = None, ui_url: str | None = None
    ) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.ui_url = ui_url  # where the MLflow UI serves this store: links point there
        probe_store(tracking_uri)  # seconds, where MLflow's own client would retry for minutes
        try:
            with creation_lock(tracking_uri):
                self.client = MlflowClient(tracking_uri=tracking_uri)
                self.client.search_experiments(max_results=1)
        except Exception as exc:  # every backend raises its own type; all mean "unusable"
            raise StoreError(f"cannot open MLflow tracking store {tracking_uri!r}: {exc}") from exc

    def experiment_id(self, name: str) -> str:
        """The experiment called `name`, created with a fixed artifact location if new."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            return experiment.experiment_id
        location = (self.artifact_root / name).as_uri() if self.artifact_root else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:  # another process created it a moment ago
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return self.experiment_id(name)

    def start_run(
        self,
        experiment_id: str,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
    ) -> str:
        all_tags = {"mlflow.runName": name, **(tags or {})}
        if parent_run_id:
            all_tags[PARENT_TAG] = parent_run_id
        run = self.client.create_run(experiment_id, run_name=name, tags=_str_values(all_tags))
        if params:
            self.log_params(run.info.run_id, params)
        return run.info.run_id

    def resume_run(self, run_id: str) -> None:
        """Mark an earlier run RUNNING again (a resumed study keeps its parent run)."""
        self.client.update_run(run_id, status="RUNNING")

    def run_exists(self, run_id: str) -> bool:
        """Whether the store holds the run, not deleted."""
        run = self.find_run(run_id)
        return run is not None and run.info.lifecycle_stage == "active"

    def run_status(self, run_id: str) -> str | None:
        """RUNNING, FINISHED, KILLED or FAILED; None for a run the store does not have."""
        run = self.find_run(run_id)
        return run.info.status if run is not None else None

    def find_run(self, run_id: str) -> Run | None:
        """The run, or None only when the store says it has no such run. Any other error (a
        server down, a locked database) is raised, never read as "gone": callers delete or
        replace what belongs to no run."""
        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        self.log_batch(run_id, metrics=metric_entities(metrics, step))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_batch(run_id, tags=tag_entities(tags))

    def delete_tag(self, run_id: str, key: str) -> None:
        self.client.delete_tag(run_id, key)

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self.client.set_experiment_tag(experiment_id, key, value)

    def log_batch(
        self,
        run_id: str,
        metrics: list[Metric] | None = None,
        params: list[Param] | None = None,
        tags: list[RunTag] | None = None,
    ) -> None:
        """Metrics, params and tags in as few requests as MLflow's limits per batch allow."""
        metrics, params, tags = metrics or [], params or [], tags or []
        each = MAX_PARAMS_TAGS_PER_BATCH  # of params, and of tags
        while metrics or params or tags:
            room = MAX_ENTITIES_PER_BATCH - len(params[:each]) - len(tags[:each])
            self.client.log_batch(
                run_id, metrics=metrics[:room], params=params[:each], tags=tags[:each]
            )
            metrics, params, tags = metrics[room:], params[each:], tags[each:]

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_artifact(self, run_id: str, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)

    def log_artifact_bytes(self, run_id: str, artifact_file: str, data: bytes) -> None:
        """`data` as the run's `artifact_file` (a path inside the run's artifacts)."""
        folder, _, name = artifact_file.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            self.client.log_artifact(run_id, str(path), folder or None)

    def artifact_bytes(self, run_id: str, artifact_file: str) -> bytes | None:
        """The content of one of the run's artifacts; None if it has none by that name."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(run_id, artifact_file, tmp)
            except (MlflowException, OSError):
                return None
            return Path(path).read_bytes()

    def find_experiment(self, name: str) -> str | None:
        """The id of the experiment called `name`, if there is one (none is created)."""
        experiment = self.client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment is not None else None

    def runs(
        self, experiment_id: str, tags: Mapping[str, str] | None = None, max_results: int = 50_000
    ) -> list[Run]:
        """Runs of the experiment whose tags have these values: the one place MLflow filter
        strings are written."""
        wanted = dict(tags or {})
        # MLflow's filter grammar has no escapes: a value is quoted with the quote it does not
        # hold; one with both quotes (or a backslash) is matched here instead.
        conditions = [
            f"tags.`{key}` = {quoted}"
            for key, value in wanted.items()
            if (quoted := filter_literal(value)) is not None
        ]
        runs = self.client.search_runs(
            [experiment_id], filter_string=" and ".join(conditions), max_results=max_results
        )
        return [r for r in runs if all(r.data.tags.get(k) == v for k, v in wanted.items())]

    def artifact_locations(self) -> list[str]:
        """Where every experiment (deleted ones too) keeps its artifacts."""
        experiments = self.client.search_experiments(view_type=ViewType.ALL)
        return [e.artifact_location for e in experiments]

    def end_run(
        self,
        run_id: str,
        status: str,
        tags: Mapping[str, Any] | None = None,
        metrics: MetricBuffer | None = None,
    ) -> None:
        """Close a run in a terminal status (FINISHED, KILLED or FAILED); its buffered metrics
        and its tags go first, in one batch where they fit."""
        pending = metrics.drain() if metrics is not None else []
        self.log_batch(run_id, metrics=pending, tags=tag_entities(tags or {}))
        self.client.set_terminated(run_id, status=status)

    @contextlib.contextmanager
    def closed_on_error(self, run_id: str) -> Iterator[None]:
        """Whatever goes wrong inside ends the run: KILLED for Ctrl-C or a kill, FAILED for
        an error, with the reason; nothing is left RUNNING."""
        try:
            yield
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            self.end_run(run_id, status, {"fail_reason": f"{type(exc).__name__}: {exc}"})
            raise

    def register_model(
        self, run_id: str, parts: Exported, name: str, tags: Mapping[str, str]
    ) -> str:
        """Log a model's exported parts as the run's MLflow Models (`model/`, and `decoder/`
        for an autoencoder), register `model/` as a new version of `name` and move the alias
        `champion` to it. Returns the version."""
        names = parts.names
        for part in names:
            self.client.log_artifacts(run_id, str(parts.folder / part), part)
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        artifacts = self.client.get_run(run_id).info.artifact_uri
        beside = {f"vae_tune.{part}": f"runs:/{run_id}/{part}" for part in names if part != MAIN}
        version = self.client.create_model_version(
            name,
            f"{artifacts}/{MAIN}",
            run_id=run_id,
            tags={**tags, **beside},
            description=usage(name, names),
        )
        self.client.set_registered_model_alias(name, "champion", version.version)
        return str(version.version)

    def champion(self, name: str) -> ModelVersion | None:
        """The version of `name` with the alias `champion`; None only when the store says there
        is no such model or alias. A store that fails or does not answer is a StoreError: a
        head study must not quietly train on another encoder because a server is down."""
        try:
            return self.client.get_model_version_by_alias(name, "champion")
        except Exception as exc:
            if not_found(exc):
                return None
            raise StoreError(
                f"MLflow tracking store {self.tracking_uri!r} did not say which version of "
                f"{name!r} is the champion: {reason(exc)}"
            ) from exc

    def load_model(
        self, name: str, version: str, *, run_id: str | None = None, allow_pickle: bool = False
    ) -> Model:
        """A registered version, from its run's `model/` folder: refused if registered from
        another run than `run_id` (its lineage), or pickled without `allow_pickle`."""
        with self._model_folder(name, version, run_id) as (path, label):
            return load_model_folder(path, allow_pickle=allow_pickle, label=label)

    def load_encoder(
        self, name: str, version: str, *, run_id: str, allow_pickle: bool = False
    ) -> Autoencoder | GraphEncoder:
        """A registered autoencoder as a head's encoder (refused as `load_model` refuses): its
        exported graph, frozen, where its class (a user's model) cannot be used here."""
        origin = {"model": name, "version": version, "run_id": run_id}
        with self._model_folder(name, version, run_id) as (path, label):
            return load_encoder_folder(path, allow_pickle=allow_pickle, label=label, origin=origin)

    @contextlib.contextmanager
    def _model_folder(
        self, name: str, version: str, run_id: str | None
    ) -> Iterator[tuple[Path, str]]:
        """A registered version's `model/` folder, downloaded for the block, and its label."""
        label = f"{name} version {version}"
        try:
            found = self.client.get_model_version(name, version)
        except Exception as exc:
            raise store_error(exc, f"{label} in {self.tracking_uri!r}") from exc
        if found.run_id is None or (run_id is not None and found.run_id != run_id):
            raise UntrustedModelError(
                f"{label} was registered from run {found.run_id}, not from run {run_id} that "
                "vae-tune recorded for it: someone else registered it; vae-tune does not load it"
            )
        with tempfile.TemporaryDirectory() as folder:
            yield Path(self.client.download_artifacts(found.run_id, "model", folder)), label

    def run_link(self, experiment_id: str, run_id: str) -> str:
        """The run's page in the MLflow UI: an absolute URL when the UI's address is known."""
        return links.mlflow_run(self.ui_url or "", experiment_id, run_id).lstrip("/")

    def child_runs(self, experiment_id: str, parent_run_id: str) -> list[Run]:
        return self.runs(experiment_id, {PARENT_TAG: parent_run_id})


def _str_values(tags: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in tags.items()}


def tag_entities(tags: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(k, v) for k, v in _str_values(tags).items()]
