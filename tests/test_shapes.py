import numpy as np
import pytest
import torch

from flexvid import shapes


def test_clip_is_pure_function_of_seed_index_length():
    a, b = shapes.make_clip(0, 7, 17), shapes.make_clip(0, 7, 17)
    assert np.array_equal(a.video, b.video) and a.caption == b.caption
    assert not np.array_equal(a.video, shapes.make_clip(0, 8, 17).video)
    # a longer clip starts with the same frames
    assert np.array_equal(shapes.make_clip(0, 7, 33).video[:17], a.video)


def test_specification_values():
    for i in range(60):
        c = shapes.make_clip(1, i, 17)
        assert c.video.shape == (17, 64, 64, 3) and c.video.dtype == np.uint8
        assert 1 <= len(c.objects) <= 2
        assert len({o.color for o in c.objects}) == len(c.objects)
        colours = {tuple(v) for v in shapes.COLORS.values()}
        pix = c.video.reshape(-1, 3)
        is_obj = np.array([tuple(p) in colours for p in map(tuple, pix[::7])])
        assert (pix[::7][~is_obj] <= 70).all()  # background stays dark
        main = c.objects[0]
        assert c.caption.startswith(f"a {main.size} {main.color} {main.shape}")
        assert shapes.class_attributes(c.label) == (main.color, main.shape, main.motion)
        # no edge contact in the first 17 frames
        r = shapes.SIZES[main.size]
        tr = shapes.object_centres(main, 17)
        assert (tr >= r).all() and (tr <= 63 - r).all()


def test_motion_and_bounce():
    o = shapes.ShapeObject("red", "circle", "large", "right", (40.0, 30.0))
    tr = shapes.object_centres(o, 81)
    assert tr[1, 0] - tr[0, 0] == pytest.approx(1.5)
    assert tr[:, 0].max() <= 63 - 9 and tr[-1, 0] < tr[:, 0].max()  # it came back


def test_classes_and_splits():
    labels = {shapes.class_index(c, s, m) for c in shapes.COLOR_NAMES for s in shapes.SHAPES for m in shapes.MOTIONS}
    assert labels == set(range(90))
    assert shapes.class_index("red", "circle", "left") == 0
    assert shapes.class_index("cyan", "triangle", "still") == 89
    assert len(set(shapes.SPLIT_SEEDS.values())) == 3
    with pytest.raises(ValueError):
        shapes.make_clip(0, 0, 16)


def test_stream_disjoint_ranks():
    a = next(shapes.batch_stream("train", 2, 5, rank=0, world_size=2))
    b = next(shapes.batch_stream("train", 2, 5, rank=1, world_size=2))
    one = next(shapes.batch_stream("train", 4, 5))
    assert np.allclose(np.concatenate([a[0], b[0]]), one[0])


def test_background_clip_is_the_clip_without_its_objects():
    for i in range(6):
        c, bg = shapes.make_clip(2, i, 9), shapes.background_clip(2, i, 9)
        assert bg.shape == c.video.shape and bg.dtype == np.uint8 and bg.max() <= 70
        assert (bg == bg[:1]).all()  # static
        colours = np.array(list(shapes.COLORS.values()))
        on_object = (c.video[..., None, :] == colours).all(-1).any(-1)  # (T, H, W)
        assert on_object.any() and np.array_equal(c.video[~on_object], bg[~on_object])
    with pytest.raises(ValueError):
        shapes.background_clip(2, 0, 16)


def test_attribute_labels_are_the_main_objects_without_rendering():
    """clip_objects gives the objects of the rendered clip (any length), and attribute_labels the main
    object's colour, shape, size and motion as indices into the world's lists."""
    for i in range(12):
        clip = shapes.make_clip(0, i, 33)
        assert shapes.clip_objects(0, i) == clip.objects
        main = clip.objects[0]
        row = shapes.attribute_labels(0, [i])[0].tolist()
        assert [names[v] for names, v in zip(shapes.ATTRIBUTES.values(), row)] == \
            [main.color, main.shape, main.size, main.motion]
    labels = shapes.attribute_labels(1, range(200))
    assert labels.shape == (200, 4) and labels.dtype == torch.long
    assert [int(labels[:, a].max()) + 1 for a in range(4)] == [len(v) for v in shapes.ATTRIBUTES.values()]
    assert shapes.attribute_labels(1, []).shape == (0, 4)


@pytest.mark.parametrize("workers", [0, 2])
def test_clip_batches_are_the_clips_in_order_whatever_the_workers(workers):
    # the latent and token caches render through this loader: worker processes must not reorder clips
    batches = list(shapes.clip_batches(1, 5, 7, T=5, batch=3, workers=workers))
    assert [len(b[1]) for b in batches] == [3, 3, 1]
    videos = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches]).tolist()
    captions = [c for b in batches for c in b[2]]
    clips = [shapes.make_clip(1, 5 + i, 5) for i in range(7)]
    assert torch.equal(videos, torch.stack([shapes.to_tensor(c.video) for c in clips]))
    assert labels == [c.label for c in clips] and captions == [c.caption for c in clips]
    with pytest.raises(ValueError, match="1 \\+ 4n"):
        shapes.ClipRange(1, 0, 3, T=6)
