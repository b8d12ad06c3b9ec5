"""Choosing the data mask as segno does, for all masks at once: the same penalty rules, quirks included, and
the same tie-breaking (the lowest-numbered mask among equal scores).

QR Code (segno's mask_scores, ISO/IEC 18004:2015 7.8.3.1), on the matrix without format and version
information, rows and columns alike:
- N1: each run of five or more modules of one colour scores its length minus 2;
- N2: each 2×2 block of one colour scores 3;
- N3: each dark-light-dark-dark-dark-light-dark pattern with four light modules (or the symbol's edge)
  before or after it scores 40. segno finds them left to right with bytes.find: after a pattern that
  scores it resumes 7 modules on, after one that does not, 4 on; so of two overlapping patterns the second
  is skipped when the first scored;
- N4: 10 for each whole 5 % that the dark modules' share is away from 50 %, in segno's float arithmetic.
The lowest total wins. Micro QR Code (7.8.3.2): the dark modules of the right column (SUM1) and bottom row
(SUM2), each without the timing pattern's corner; the highest SUM×16 + the other wins.
"""

from __future__ import annotations

import numpy as np

_N3_PATTERN = 0b1011101
_LIGHT_AROUND = 4


def best_mask(matrix: np.ndarray, masks: np.ndarray, micro: bool) -> int:
    candidates = matrix[np.newaxis] ^ masks
    if micro:
        right = candidates[:, 1:, -1].sum(axis=1, dtype=np.int64)
        bottom = candidates[:, -1, 1:].sum(axis=1, dtype=np.int64)
        scores = np.where(right <= bottom, right * 16 + bottom, bottom * 16 + right)
        return int(np.argmax(scores))  # the first of equal maxima, as segno's strict `>`
    size = matrix.shape[0]
    lines = np.concatenate((candidates, candidates.transpose(0, 2, 1)), axis=1)
    scores = _runs(lines) + _blocks(candidates) + _finder_like(lines)
    dark = candidates.sum(axis=(1, 2), dtype=np.int64).tolist()
    totals = [int(score) + _balance(count, size) for score, count in zip(scores.tolist(), dark, strict=True)]
    return totals.index(min(totals))  # the first of equal minima, as segno's strict `<`


def _balance(dark: int, size: int) -> int:
    percent = float(dark) / (size**2)
    return 10 * int(abs(percent * 100 - 50) / 5)


def _runs(lines: np.ndarray) -> np.ndarray:
    """N1 per mask. A run of length L >= 5 scores L - 2: one for each module that ends five equal modules
    in a row (L - 4 of them), plus two for each run that reaches five."""
    equal = lines[:, :, 1:] == lines[:, :, :-1]
    five = equal[:, :, 3:] & equal[:, :, 2:-1] & equal[:, :, 1:-2] & equal[:, :, :-3]
    reached = five[:, :, 1:] & ~five[:, :, :-1]
    modules = five.sum(axis=(1, 2), dtype=np.int64)
    runs = five[:, :, 0].sum(axis=1, dtype=np.int64) + reached.sum(axis=(1, 2), dtype=np.int64)
    return modules + 2 * runs


def _blocks(candidates: np.ndarray) -> np.ndarray:
    """N2 per mask."""
    corner = candidates[:, :-1, :-1]
    same = (corner == candidates[:, 1:, :-1]) & (corner == candidates[:, :-1, 1:]) & (corner == candidates[:, 1:, 1:])
    return 3 * same.sum(axis=(1, 2), dtype=np.int64)


def _finder_like(lines: np.ndarray) -> np.ndarray:
    """N3 per mask. Lines get four light modules of padding on each side: segno's shorter windows at the
    edges (and its idx in (0, size - 7) case) are then ordinary all-light windows."""
    count, rows, size = lines.shape
    padded = np.zeros((count, rows, size + 2 * _LIGHT_AROUND), dtype=np.uint8)
    padded[:, :, _LIGHT_AROUND:-_LIGHT_AROUND] = lines
    width = padded.shape[2]
    windows = padded[:, :, : width - 6] << 6
    for k in range(1, 7):
        windows |= padded[:, :, k : width - 6 + k] << (6 - k)
    darks_in_four = padded[:, :, : width - 3].copy()
    for k in range(1, 4):
        darks_in_four |= padded[:, :, k : width - 3 + k]
    mask_of, line_of, start_of = np.nonzero(windows == _N3_PATTERN)
    if not start_of.size:
        return np.zeros(count, dtype=np.int64)
    light_before = darks_in_four[mask_of, line_of, start_of - 4] == 0
    light_after = darks_in_four[mask_of, line_of, start_of + 7] == 0
    scores = light_before | light_after
    line_key = mask_of * rows + line_of
    # Patterns overlap only 4 or 6 modules apart; the lines where two do are replayed as segno scans them.
    near = np.flatnonzero((line_key[1:] == line_key[:-1]) & (start_of[1:] - start_of[:-1] < 7))
    if near.size:
        replayed = np.isin(line_key, line_key[near])
        scores[replayed] = _as_found(line_key[replayed].tolist(), start_of[replayed].tolist(),
                                     scores[replayed].tolist())
    return 40 * np.bincount(mask_of[scores], minlength=count).astype(np.int64)


def _as_found(line_key: list[int], start: list[int], scores: list[bool]) -> np.ndarray:
    """Which patterns segno's scan counts: it resumes 7 modules after one that scores, 4 after one that
    does not, and a pattern starting before that is never seen."""
    counted = []
    resume_line, resume_at = -1, 0
    for key, position, scoring in zip(line_key, start, scores, strict=True):
        seen = key != resume_line or position >= resume_at
        counted.append(seen and scoring)
        if seen:
            resume_line, resume_at = key, position + (7 if scoring else 4)
    return np.array(counted, dtype=bool)
