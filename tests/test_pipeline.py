"""The grain training and evaluation streams: determinism, resume, sharding, padding."""

import numpy as np
import pytest

from hrnet_jax import config_lib
from hrnet_jax.data import coco, pipeline
from hrnet_jax.data.samples import TopDownSampler


@pytest.fixture(scope="module")
def instances(coco_mini):
    records, _ = coco.gt_instances(
        coco_mini / "annotations/person_keypoints_mini.json",
        coco_mini / "images",
        aspect_ratio=0.75,
    )
    return records


@pytest.fixture(scope="module")
def sampler():
    config = config_lib.recipe()
    config.input_size, config.heatmap_size = (64, 48), (16, 12)
    return TopDownSampler.from_config(config, train=True)


def _stream(instances, sampler, workers=0, **kw):
    kw = {"seed": 7, "global_batch_size": 4, "num_epochs": 3, **kw}
    options = pipeline.DataOptions(num_workers=workers, num_threads=2, prefetch_buffer_size=4)
    return pipeline.train_iterator(instances, sampler, options=options, **kw)


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_batches_do_not_depend_on_the_number_of_workers(instances, sampler):
    inline = list(_stream(instances, sampler, workers=0))
    workers = list(_stream(instances, sampler, workers=2))
    assert len(inline) == 9  # 3 epochs x (12 // 4) batches
    _assert_same_batches(inline, workers)


def test_each_epoch_is_a_new_order_of_all_records(instances, sampler):
    batches = list(_stream(instances, sampler))
    epochs = [np.concatenate([b["index"] for b in batches[e * 3 : e * 3 + 3]]) for e in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(12))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    # The same record is augmented differently in another epoch.
    first = {int(i): im for b in batches[:3] for i, im in zip(b["index"], b["image"], strict=True)}
    second = {
        int(i): im for b in batches[3:6] for i, im in zip(b["index"], b["image"], strict=True)
    }
    assert any(not np.array_equal(first[i], second[i]) for i in range(12))


def test_another_seed_gives_another_stream(instances, sampler):
    a = next(_stream(instances, sampler, seed=1))
    b = next(_stream(instances, sampler, seed=2))
    assert not np.array_equal(a["image"], b["image"])


def test_resume_from_saved_state_gives_the_same_next_batches(instances, sampler):
    straight = list(_stream(instances, sampler))
    first = _stream(instances, sampler, workers=2)
    for _ in range(4):
        next(first)
    state = first.get_state()
    first.close()
    resumed = _stream(instances, sampler)
    resumed.set_state(state)
    _assert_same_batches(straight[4:], list(resumed))


def test_state_from_another_data_set_is_refused(instances, sampler):
    state = _stream(instances, sampler).get_state()
    other = _stream(instances, sampler, global_batch_size=6)
    with pytest.raises(ValueError, match="global_batch_size is 4 in the checkpoint and 6 now"):
        other.set_state(state)


def test_process_shards_are_disjoint_and_cover_each_global_batch(instances, sampler):
    whole = list(_stream(instances, sampler, num_epochs=1))
    shards = [
        list(_stream(instances, sampler, num_epochs=1, process_index=p, process_count=2))
        for p in range(2)
    ]
    for step, batch in enumerate(whole):
        halves = [shards[p][step] for p in range(2)]
        assert set(halves[0]["index"]).isdisjoint(halves[1]["index"])
        for key in batch:  # process 0 holds the first half of the global batch, process 1 the rest
            np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), batch[key])
    covered = np.concatenate([b["index"] for s in shards for b in s])
    assert sorted(covered) == list(range(12))


def test_eval_stream_is_padded_to_whole_batches_with_a_mask(instances, coco_mini):
    config = config_lib.recipe()
    config.input_size, config.heatmap_size = (64, 48), (16, 12)
    sampler = TopDownSampler.from_config(config, train=False)
    options = pipeline.DataOptions(num_threads=1)
    shards = [
        list(
            pipeline.eval_iterator(
                instances,
                sampler,
                global_batch_size=10,
                options=options,
                process_index=p,
                process_count=2,
            )
        )
        for p in range(2)
    ]
    assert [len(s) for s in shards] == [2, 2]  # 12 records -> 2 global batches of 10
    assert all(b["image"].shape == (5, 64, 48, 3) for s in shards for b in s)
    index = np.concatenate([b["index"] for s in shards for b in s])
    valid = np.concatenate([b["valid"] for s in shards for b in s])
    assert sorted(index[valid]) == list(range(12)) and np.all(index[~valid] == -1)
    assert valid.sum() == 12 and "heatmaps" not in shards[0][0]


def _opencv_threads(_):
    import cv2

    return np.int32(cv2.getNumThreads())


def test_worker_processes_run_opencv_on_one_thread():
    """Each worker is one core; OpenCV's default pool (one thread per core) would oversubscribe."""
    import cv2

    if cv2.getNumThreads() == 1:
        pytest.skip("OpenCV already runs one thread in this process; nothing to tell apart")
    import grain

    threads = grain.MapDataset.range(2).map(_opencv_threads).batch(2)
    options = pipeline.DataOptions(num_workers=1, num_threads=1, prefetch_buffer_size=1)
    assert next(iter(options.apply(threads))).tolist() == [1, 1]
