"""Row blocks of large NumPy matrices, sized to stay in the CPU cache."""

#: Target size of one row block in bytes. A block and the few temporaries computed
#: from it then stay in the CPU's L2/L3 cache while every step runs over it, instead
#: of each step streaming the whole matrix through memory (and faulting in a fresh
#: whole-matrix temporary): on 1,000,000 x 100 float64, blocks of 128 KB to 2 MB binned
#: the matrix within 15% of one another's time and 13 MB blocks took 40% longer
#: (BENCHMARKS.md, "calibration_errors in row blocks").
CACHE_BLOCK_BYTES = 2**19


def row_blocks(num_rows, row_bytes, block_bytes=None):
    """``(start, stop)`` of consecutive row blocks of about ``block_bytes`` each.

    Args:
        num_rows: number of rows to cover.
        row_bytes: bytes of one row (values below 1 count as 1).
        block_bytes: target block size; ``CACHE_BLOCK_BYTES`` when None (read at call
            time, so tests can make it small). Every block has at least one row.

    Returns:
        A list of ``(start, stop)`` pairs covering ``range(num_rows)`` in order.
    """
    block_bytes = CACHE_BLOCK_BYTES if block_bytes is None else block_bytes
    rows = max(1, int(block_bytes) // max(1, int(row_bytes)))
    return [(start, min(start + rows, num_rows)) for start in range(0, num_rows, rows)]
