import mmap
import sys

import numpy as np
import pytest

from core.largeformat.shared_pages import release_shared

linux = pytest.mark.skipif(sys.platform != "linux", reason="madvise and /proc/self/maps")


def _pages(count):
    return mmap.PAGESIZE * count


@linux
def test_shared_pages_are_released_and_read_back_unchanged():
    shared = mmap.mmap(-1, _pages(8))  # MAP_SHARED, as Ray's object store maps /dev/shm
    pixels = np.frombuffer(shared, np.uint8)[104:].reshape(-1, 3)
    values = np.arange(pixels.size, dtype=np.uint8).reshape(pixels.shape)
    pixels[:] = values
    assert release_shared(pixels[:5])  # a view: the whole buffer's pages go
    assert np.array_equal(pixels, values)
    del pixels, values


@linux
def test_private_memory_is_left_alone():
    pixels = np.arange(_pages(8), dtype=np.uint64).astype(np.uint8)
    before = pixels.copy()
    assert not release_shared(pixels)
    assert np.array_equal(pixels, before)


@linux
def test_a_buffer_without_a_whole_page_is_left_alone():
    shared = mmap.mmap(-1, _pages(2))
    pixels = np.frombuffer(shared, np.uint8, count=20, offset=_pages(1) - 10)
    assert not release_shared(pixels)
    del pixels
