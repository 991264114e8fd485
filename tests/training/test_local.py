"""Local training options: length-grouped batches, the learning-rate schedule inside a job."""

import numpy as np

from fedlora.seeding import numpy_rng
from fedlora.training.local import batch_order, group_batches_by_length


def test_length_grouping_keeps_the_examples_and_cuts_padding_deterministically():
    lengths = numpy_rng(0, "lengths").integers(8, 120, size=500)
    indices = np.arange(500)
    batches = batch_order(indices, steps=60, batch_size=16, rng=numpy_rng(0, "b"))
    grouped = group_batches_by_length(batches, lengths, numpy_rng(0, "g"))
    again = group_batches_by_length(batches, lengths, numpy_rng(0, "g"))
    assert all(np.array_equal(a, b) for a, b in zip(grouped, again, strict=True))
    assert [len(b) for b in grouped] == [len(b) for b in batches]
    assert sorted(np.concatenate(grouped).tolist()) == sorted(np.concatenate(batches).tolist())

    def padding(bs):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in bs)

    assert padding(grouped) < 0.3 * padding(batches)
