"""orbax checkpoints in WORKDIR/checkpoints: the train state, the data iterator's state, the config.

Saves are asynchronous and atomic (orbax writes to a temporary directory and renames it when
complete), so a run killed at any moment resumes from the last complete checkpoint. Restores go
straight into the current mesh's shardings, whatever mesh wrote them.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

# The config fields that fix the network's architecture; checkpoints must agree on them to be used,
# and a run resumes only with the same input size too.
ARCHITECTURE_KEYS = tuple(
    f"model.{k}"
    for k in (
        "num_joints",
        "stem_channels",
        "stage1",
        "stage2",
        "stage3",
        "stage4",
        "final_conv_kernel",
    )
)
RESUME_KEYS = (*ARCHITECTURE_KEYS, "input_size", "heatmap_size")


class CheckpointMismatchError(ValueError):
    """A checkpoint of another model or input size; the message names the keys and shapes."""


def checkpoint_dir(path: str | pathlib.Path) -> pathlib.Path:
    """A workdir's checkpoint directory, or the path itself if it already is one."""
    path = pathlib.Path(path)
    return path if path.name == "checkpoints" else path / "checkpoints"


def require_step(workdir: str | pathlib.Path, step: int | None = None) -> int:
    """The step a read-only use (evaluate, predict) will restore, or a clear error, checked before
    an orbax manager exists: one opened on a missing directory creates it and starts a metadata
    write that can outlive a quick exit."""
    directory = checkpoint_dir(workdir)
    # orbax renames a checkpoint to its bare step number once it is complete.
    steps = (
        sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
        if directory.is_dir()
        else []
    )
    return _resolve_step(directory, step, steps)


def _resolve_step(directory: pathlib.Path, step: int | None, steps: list[int]) -> int:
    if not steps:
        raise FileNotFoundError(f"no complete checkpoint in {directory}")
    if step is None:
        return max(steps)
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; it has {steps}")
    return step


class Checkpoints:
    """Keeps the latest `keep` checkpoints, plus the best one by `metrics['AP']` when given."""

    def __init__(
        self,
        directory: str | pathlib.Path,
        *,
        every_steps: int = 1,
        keep: int = 3,
        use_async: bool = True,
    ):
        preserve = policies.AnyPreservationPolicy(
            [
                policies.LatestN(n=keep),
                policies.BestN(
                    get_metric_fn=lambda m: m["AP"], n=1, keep_checkpoints_without_metrics=False
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=every_steps,
            preservation_policy=preserve,
            enable_async_checkpointing=use_async,
            cleanup_tmp_directories=True,
        )
        self.directory = checkpoint_dir(directory)
        handlers = {
            "state": ocp.PyTreeCheckpointHandler(),
            "data": ocp.JsonCheckpointHandler(),
            "config": ocp.JsonCheckpointHandler(),
        }
        self.manager = ocp.CheckpointManager(
            self.directory, item_handlers=handlers, options=options
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        data_state: dict,
        config: ml_collections.ConfigDict,
        *,
        metrics: dict | None = None,
        force: bool = False,
    ) -> bool:
        """Starts an asynchronous save (if `step` is due or `force`); returns whether it did."""
        args = ocp.args.Composite(
            state=ocp.args.PyTreeSave(state),
            data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
        )
        return self.manager.save(step, args=args, metrics=metrics, force=force)

    def restore(
        self, abstract_state: Any, config: ml_collections.ConfigDict, step: int | None = None
    ) -> tuple[Any, dict, int]:
        """The state (into `abstract_state`'s shardings) and data state of `step` (default latest)."""
        step = self.resolve_step(step)
        check_compatible(self.directory, step, config, self.manager, abstract_state, RESUME_KEYS)
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=_restore_args(abstract_state), data=ocp.args.JsonRestore()
            ),
        )
        return restored.state, restored.data, step

    def restore_variables(
        self, abstract_variables: dict, config: ml_collections.ConfigDict, step: int | None = None
    ) -> tuple[dict, int]:
        """Only `params` and `batch_stats` (for evaluation and `init_from`), of any checkpoint."""
        step = self.resolve_step(step)
        check_compatible(
            self.directory, step, config, self.manager, abstract_variables, ARCHITECTURE_KEYS
        )
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(state=_restore_args(abstract_variables, partial=True)),
        )
        return restored.state, step

    def resolve_step(self, step: int | None) -> int:
        """`step` if a complete checkpoint has it, the latest for None; else a clear error."""
        return _resolve_step(self.directory, step, self.all_steps())

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def _restore_args(abstract: Any, partial: bool = False) -> ocp.args.PyTreeRestore:
    return ocp.args.PyTreeRestore(
        item=abstract,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=partial,
    )


def save_variables(
    directory: str | pathlib.Path, variables: dict, config: ml_collections.ConfigDict, step: int = 0
) -> pathlib.Path:
    """Writes model variables alone as a checkpoint that `init_from` and the evaluator read."""
    checkpoints = Checkpoints(directory, use_async=False)
    args = ocp.args.Composite(
        state=ocp.args.PyTreeSave(variables),
        config=ocp.args.JsonSave(json.loads(config.to_json_best_effort())),
    )
    checkpoints.manager.save(step, args=args, force=True)
    checkpoints.close()
    return checkpoints.directory


def check_compatible(
    directory: pathlib.Path,
    step: int,
    config: ml_collections.ConfigDict,
    manager: ocp.CheckpointManager,
    abstract_state: Any,
    keys: tuple[str, ...],
) -> None:
    """Refuses a checkpoint written for another model (or input size), naming keys and shapes."""
    problems = []
    saved = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config
    current = json.loads(config.to_json_best_effort())
    for key in keys:
        problems += _diff(_get(saved, key), _get(current, key), key)
    problems += _shape_diff(manager.item_metadata(step).state, abstract_state)
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint {directory / str(step)} does not fit this config:\n  "
            + "\n  ".join(problems)
        )


def _get(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _diff(saved: Any, current: Any, name: str) -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            p
            for k in sorted(set(saved) | set(current))
            for p in _diff(saved.get(k), current.get(k), f"{name}.{k}")
        ]
    if saved != current:
        return [f"{name} is {saved} in the checkpoint but {current} in the config"]
    return []


def _path_name(path) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _shape_diff(saved_tree: Any, abstract: Any, limit: int = 20) -> list[str]:
    """Leaves of `abstract` whose shapes differ from (or are missing in) the checkpoint."""
    leaves = jax.tree_util.tree_leaves_with_path
    saved = {_path_name(k): tuple(v.shape) for k, v in leaves(saved_tree) if hasattr(v, "shape")}
    problems = []
    for path, leaf in leaves(abstract):
        name = _path_name(path)
        if name not in saved:
            problems.append(
                f"{name}: missing in the checkpoint (model expects {tuple(leaf.shape)})"
            )
        elif saved[name] != tuple(leaf.shape):
            problems.append(
                f"{name}: shape {saved[name]} in the checkpoint, {tuple(leaf.shape)} in the model"
            )
    more = [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
    return problems[:limit] + more
