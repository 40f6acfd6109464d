"""A trained network as a function of person boxes: flip-test inference on every device, decoded
to image keypoints.

`Predictor` is built once (model, codec, sampler, the compiled inference) and reused: by the
evaluator at every evaluation of a run, by `python -m hrnet_jax.predict`, and by the benchmarks.
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from hrnet_jax import checkpoint, config_lib, models, parallel
from hrnet_jax.data import keypoints, pipeline
from hrnet_jax.data.samples import TopDownSampler
from hrnet_jax.errors import UserError


def heatmaps_with_flip_test(
    apply: Callable[[jax.Array], jax.Array], images: jax.Array, flip_perm, shift: bool
) -> jax.Array:
    """Averages the heatmaps of the images and of their mirror images, mirrored back with left and
    right joints swapped and (`shift`) moved one pixel right to undo the flip's half-pixel offset.

    Written with lax slices, reversals and concatenations only, so that it also exports with a
    symbolic batch size (NumPy-style indexing becomes a gather there, which jax2onnx cannot lower).
    """
    lax = jax.lax
    n = images.shape[0]
    both = apply(lax.concatenate([images, lax.rev(images, (2,))], 0)).astype(jnp.float32)
    heatmaps = lax.slice_in_dim(both, 0, n, axis=0)
    flipped = lax.rev(lax.slice_in_dim(both, n, 2 * n, axis=0), (2,))
    flipped = lax.concatenate([lax.slice_in_dim(flipped, j, j + 1, axis=3) for j in flip_perm], 3)
    if shift:  # column x takes column x - 1; column 0 keeps its value (the reference's shift)
        width = flipped.shape[2]
        flipped = lax.concatenate(
            [
                lax.slice_in_dim(flipped, 0, 1, axis=2),
                lax.slice_in_dim(flipped, 0, width - 1, axis=2),
            ],
            2,
        )
    return (heatmaps + flipped) * 0.5


def inference_function(
    config: ml_collections.ConfigDict, model: models.PoseHRNet
) -> Callable[[dict, jax.Array], jax.Array]:
    """(variables, uint8 RGB crops (B, H, W, 3)) → float32 heatmaps (B, h, w, K): normalisation,
    the network in eval mode and, with `eval.flip_test`, the flip test. What the evaluator runs and
    what `hrnet_jax.export` serialises."""
    mean, std = tuple(config.data.mean), tuple(config.data.std)
    perm = tuple(int(j) for j in keypoints.from_config(config).flip_permutation)

    def infer(variables: dict, images: jax.Array) -> jax.Array:
        x = models.normalize(images, mean, std, model.backbone.dtype)
        apply = functools.partial(model.apply, variables)
        if config.eval.flip_test:
            return heatmaps_with_flip_test(apply, x, perm, config.eval.shift_heatmap)
        return apply(x).astype(jnp.float32)

    return infer


class Predictor:
    """Person instances → keypoints (N, K, 3: image x, y, score), on all devices of `mesh`.

    The inference function is jitted once here; `traces` counts how often JAX traced it (once per
    input shape, so once per run: evaluation batches are padded to one shape).
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        mesh: jax.sharding.Mesh,
        variables: dict | None = None,
        *,
        data_options: pipeline.DataOptions | None = None,
    ):
        self.config = config
        self.mesh = mesh
        self.variables = variables
        self.step: int | None = None  # the checkpoint step, for predictors restored from one
        self.model = models.create_model(config.model)
        self.spec = keypoints.from_config(config)
        self.sampler = TopDownSampler.from_config(config, train=False)
        self.codec = self.sampler.codec  # the one that encodes training targets
        self.data_options = data_options or pipeline.DataOptions.from_config(config.data)
        self.batch_size = config.eval.batch_size_per_device * mesh.size
        self.traces = 0
        self._infer = self._compile()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | pathlib.Path,
        step: int | None = None,
        *,
        best: bool = False,
        config: ml_collections.ConfigDict | None = None,
        mesh: jax.sharding.Mesh | None = None,
        data_options: pipeline.DataOptions | None = None,
    ) -> Predictor:
        """Restores a run's params and BN statistics (step: default the latest; `best`: the best-AP
        copy) onto this process's devices, whatever devices trained them. `config` defaults to the
        one the checkpoint was written with."""
        mesh = mesh or parallel.make_mesh()
        with checkpoint.Checkpoints.read(path, best) as checkpoints:
            step = checkpoints.resolve_step(step)
            saved = checkpoints.restore_config(step)
            if config is None:
                config = config_lib.check(saved)
            elif config.codec.udp != saved.codec.udp:  # the crop the network learnt
                raise UserError(
                    f"{path}'s step {step} was trained with codec.udp={saved.codec.udp}, but the "
                    f"config has codec.udp={config.codec.udp}: set --config.codec.udp="
                    f"{saved.codec.udp} (and eval.shift_heatmap={not saved.codec.udp})"
                )
            predictor = cls(config, mesh, data_options=data_options)
            abstract = models.abstract_variables(
                predictor.model, config.input_size, parallel.replicated(mesh)
            )
            predictor.variables, predictor.step = checkpoints.restore_variables(
                abstract, config, step
            )
        return predictor

    def _compile(self) -> Callable:
        infer = inference_function(self.config, self.model)

        def counted(variables, images):
            self.traces += 1  # Python runs only while JAX traces
            return infer(variables, images)

        sharded = jax.shard_map(
            counted,
            mesh=self.mesh,
            in_specs=(P(), P(parallel.DATA_AXIS)),
            out_specs=P(parallel.DATA_AXIS),
        )
        return jax.jit(sharded)

    def heatmaps(self, images: np.ndarray | jax.Array, variables: dict | None = None) -> jax.Array:
        """uint8 image crops (this process's rows of a global batch, or the global batch as a
        `data`-sharded jax.Array) → float32 heatmaps, sharded."""
        if not isinstance(images, jax.Array):
            images = parallel.global_batch({"image": images}, self.mesh)["image"]
        return self._infer(self.variables if variables is None else variables, images)

    def predict(self, instances, variables: dict | None = None) -> dict[str, np.ndarray]:
        """Keypoints of every readable instance, in instance order, on every process, with the
        instances' `index`, `center`, `scale`, `score` and `image_id`. Unreadable records (data.strict
        False) are left out; `len(instances) - len(result["index"])` counts them."""
        batches = pipeline.eval_iterator(
            instances,
            self.sampler,
            global_batch_size=self.batch_size,
            options=self.data_options,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
        rows = []
        try:
            for batch in batches:
                heatmaps = parallel.local_rows(self.heatmaps(batch["image"], variables))
                keypoints = self.codec.decode_to_image(heatmaps, batch["center"], batch["scale"])
                keys = ("index", "valid", "center", "scale", "score", "image_id")
                rows.append({"keypoints": keypoints, **{k: batch[k] for k in keys}})
        finally:
            batches.close()
        local = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        if jax.process_count() > 1:  # gathers through JAX: int64 comes back as int32
            local = multihost_utils.process_allgather(local, tiled=True)
        index = local["index"].astype(np.int64)
        order = np.argsort(np.where(local["valid"], index, np.iinfo(np.int64).max))
        kept = order[: int(local["valid"].sum())]
        return {k: v[kept] for k, v in local.items() if k != "valid"} | {"index": index[kept]}
