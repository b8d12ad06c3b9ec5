"""segno's encoder, with its hot parts replaced: the same module matrix, bit for bit, several times faster.

segno stays the reference. Everything that decides *what* is encoded is segno's own code, called as is:
segments, version, error boost, the bit stream with terminator and padding, function patterns, mask
functions, format and version information. Replaced are the three loops where segno spends its time, each
by an equivalent that gives the same result:
- Reed-Solomon error correction: one table lookup and XOR per data codeword on a Python int as the LFSR
  register (segno: one Python XOR per codeword and error codeword);
- codeword placement: the order in which segno's zig-zag fills a version's free modules, computed once per
  version, then one numpy assignment;
- mask selection: the eight masks applied and scored at once by masks.py with segno's penalty rules and
  tie-breaking (segno: eight copies of the matrix, four penalty rules, module by module).
tests/unit/test_encoder.py checks the result equals segno's matrix, version, level and mask.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from itertools import zip_longest

import numpy as np
import segno
from segno import consts
from segno import encoder as reference

from app.qrcodes.masks import best_mask


@dataclass(frozen=True)
class Symbol:
    """A finished symbol: `matrix` holds 0 (light) and 1 (dark), without a quiet zone."""

    matrix: np.ndarray
    version: int  # segno's constant: 1..40, or consts.VERSION_M1..M4 (negative) for Micro QR
    error: int | None  # segno's constant; None for M1
    mask: int
    segments: reference.Segments

    @property
    def is_micro(self) -> bool:
        return self.version < 1

    def qrcode(self) -> segno.QRCode:
        """The same symbol as segno's object, for its writers (module colours, PDF, EPS)."""
        rows = tuple(bytearray(row.tobytes()) for row in self.matrix)
        return segno.QRCode(reference.Code(rows, self.version, self.error, self.mask, self.segments))


def encode(
    content: str,
    error: str | None,
    mode: str | None,
    encoding: str | None,
    micro: bool,
    boost_error: bool = True,
    mask: int | None = None,
) -> Symbol:
    """As segno.make_qr / make_micro with these arguments (no version, no ECI). Raises what segno raises."""
    error_level = reference.normalize_errorlevel(error, accept_none=True)
    if error_level == consts.ERROR_LEVEL_H and micro:
        raise ValueError('Error correction level "H" is not available for Micro QR Codes')
    segments = reference.prepare_data(content, reference.normalize_mode(mode), encoding)
    version = reference.find_version(segments, error_level, eci=False, micro=micro)
    if error_level is None and version != consts.VERSION_M1:
        error_level = consts.ERROR_LEVEL_L
    mask = reference.normalize_mask(mask, version < 1)
    if boost_error:
        error_level = reference.boost_error_level(version, error_level, segments, False)
    layout = _layout(version)
    matrix = layout.template.copy()
    matrix.flat[layout.order] = _message_bits(segments, version, error_level)
    if mask is None:
        mask = best_mask(matrix, layout.masks, micro=version < 1)
    matrix ^= layout.masks[mask]
    # segno's own writers of the format and version information; numpy rows take their item assignments.
    reference.add_format_info(matrix, version, error_level, mask)
    reference.add_version_info(matrix, version)
    return Symbol(matrix, version, error_level, mask, segments)


def _message_bits(segments: reference.Segments, version: int, error: int | None) -> np.ndarray:
    """The final message (data and error codewords, interleaved, remainder bits) as one bit per byte."""
    is_micro = version < 1
    ver, ver_range = (version, version) if is_micro else (None, reference.version_range(version))
    buff = reference.Buffer()
    for segment in segments:
        reference.write_segment(buff, segment, ver, ver_range, False)
    capacity = consts.SYMBOL_CAPACITY[version][error]
    reference.write_terminator(buff, capacity, ver, len(buff))
    reference.write_padding_bits(buff, version, len(buff))
    reference.write_pad_codewords(buff, version, capacity, len(buff))
    codewords = np.packbits(np.frombuffer(bytes(buff.getbits()), dtype=np.uint8)).tobytes()

    data_blocks: list[bytes] = []
    error_blocks: list[bytes] = []
    start = 0
    for info in consts.ECC[version][error]:
        ec_length = info.num_total - info.num_data
        for _ in range(info.num_blocks):
            block = codewords[start : start + info.num_data]
            start += info.num_data
            data_blocks.append(block)
            error_blocks.append(_error_codewords(block, ec_length))
    data = bytes(byte for column in zip_longest(*data_blocks) for byte in column if byte is not None)
    errors = bytes(byte for column in zip_longest(*error_blocks) for byte in column if byte is not None)
    if version in (consts.VERSION_M1, consts.VERSION_M3):
        # Their last data codeword has 4 bits (one block only).
        data_bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:-4]
    else:
        data_bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    error_bits = np.unpackbits(np.frombuffer(errors, dtype=np.uint8))
    remainder = np.zeros(_REMAINDER_BITS.get(version, 0), dtype=np.uint8)
    return np.concatenate((data_bits, error_bits, remainder))


# ISO/IEC 18004:2015 7.6, as segno's make_final_message lists them.
_REMAINDER_BITS = {v: 7 for v in range(2, 7)} | {v: 3 for v in (*range(14, 21), *range(28, 35))}
_REMAINDER_BITS |= {v: 4 for v in range(21, 28)}


def _error_codewords(block: bytes, ec_length: int) -> bytes:
    """The remainder of block·x^ec_length divided by the generator polynomial: segno's synthetic division,
    with the register held in one int and each step's row of products looked up."""
    products = _generator_products(ec_length)
    top = 8 * (ec_length - 1)
    keep = (1 << (8 * ec_length)) - 1
    register = 0
    for byte in block:
        register = ((register << 8) & keep) ^ products[(register >> top) ^ byte]
    return register.to_bytes(ec_length, "big")


@functools.cache
def _generator_products(ec_length: int) -> tuple[int, ...]:
    """For each coefficient c, c times the generator polynomial (without its leading term) as an int."""
    generator = consts.GEN_POLY[ec_length]
    log, exp = consts.GALIOS_LOG, consts.GALIOS_EXP
    rows = [0]
    for coefficient in range(1, 256):
        rows.append(int.from_bytes(bytes(exp[log[coefficient] + g] for g in generator), "big"))
    return tuple(rows)


@dataclass(frozen=True)
class _Layout:
    template: np.ndarray  # function patterns and reserved areas; 2 where a codeword bit goes
    order: np.ndarray  # flat indices of the codeword modules in placement order
    masks: np.ndarray  # (masks, n, n): 1 where a mask pattern flips a module of the encoding region


@functools.cache
def _layout(version: int) -> _Layout:
    """Everything that depends on the version only, built by segno's own functions, once per process."""
    is_micro = version < 1
    width = reference.calc_matrix_size(version)
    rows = reference.make_matrix(width, width)
    reference.add_finder_patterns(rows, width, width)
    reference.add_alignment_patterns(rows, width, width)
    template = np.array([list(row) for row in rows], dtype=np.uint8)
    # segno's encoding region (find_and_apply_best_mask): what the patterns leave free, the dark module not.
    region = template > 1
    if not is_micro:
        region[-8, 8] = False
    rows_index, columns_index = np.indices((width, width))
    masks = np.zeros((4 if is_micro else 8, width, width), dtype=np.uint8)
    for number, pattern in enumerate(reference.get_data_mask_functions(is_micro)):
        flips = np.frompyfunc(pattern, 2, 1)(rows_index, columns_index).astype(bool)
        masks[number] = flips & region
    return _Layout(template, _placement_order(template, version), masks)


def _placement_order(template: np.ndarray, version: int) -> np.ndarray:
    """segno's add_codewords walk (upwards and downwards in two-module columns from the right), recording
    where each bit goes instead of writing it."""
    size = len(template)
    is_micro = version < 1
    # M1 and M3 start at the upper right corner (segno issue 36).
    inc = 2 if version in (consts.VERSION_M1, consts.VERSION_M3) else 0
    free = template == 2
    order = []
    for right in range(size - 1, 0, -2):
        if not is_micro and right <= 6:
            right -= 1
        for vertical in range(size):
            for z in range(2):
                j = right - z
                upwards = ((right + inc) & 2) == 0
                if not is_micro:
                    upwards ^= j < 6
                i = (size - 1 - vertical) if upwards else vertical
                if free[i, j]:
                    free[i, j] = False  # segno fills a module once
                    order.append(i * size + j)
    return np.array(order, dtype=np.intp)
