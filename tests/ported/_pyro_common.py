"""Assertion helpers of Pyro's own test suite, copied so that the ported tests keep the
host's assertions verbatim.

Source: https://github.com/pyro-ppl/pyro, ``tests/common.py`` (``assert_tensors_equal``,
``assert_close``, ``assert_equal``), Copyright (c) 2017-2019 Uber Technologies, Inc.,
SPDX-License-Identifier: Apache-2.0. Sparse-tensor branches are left out (unused here).
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from numpy.testing import assert_allclose
from pytest import approx

__all__ = ["assert_close", "assert_equal"]


def _is_iterable(obj):
    try:
        iter(obj)
        return True
    except BaseException:
        return False


def assert_tensors_equal(a, b, prec=0.0, msg=""):
    assert a.size() == b.size(), msg
    if isinstance(prec, numbers.Number) and prec == 0:
        assert (a == b).all(), msg
        return
    if a.numel() == 0 and b.numel() == 0:
        return
    b = b.type_as(a)
    b = b.cpu()
    if not a.dtype.is_floating_point:
        assert (a == b).all(), msg
        return
    # check that NaNs are in the same locations
    nan_mask = a != a
    assert torch.equal(nan_mask, b != b), msg
    diff = a - b
    diff[a == b] = 0  # handle inf
    diff[nan_mask] = 0
    if diff.is_signed():
        diff = diff.abs()
    if isinstance(prec, torch.Tensor):
        assert (diff <= prec).all(), msg
    else:
        max_err = diff.max().item()
        assert max_err <= prec, msg


def assert_close(actual, expected, atol=1e-7, rtol=0, msg=""):
    if not msg:
        msg = f"{actual} vs {expected}"
    if isinstance(actual, numbers.Number) and isinstance(expected, numbers.Number):
        assert actual == approx(expected, abs=atol, rel=rtol), msg
    elif type(actual) is not type(expected):
        raise AssertionError(f"cannot compare {type(actual)} and {type(expected)}")
    elif torch.is_tensor(actual) and torch.is_tensor(expected):
        prec = atol + rtol * abs(expected) if rtol > 0 else atol
        assert_tensors_equal(actual, expected, prec, msg)
    elif type(actual) is np.ndarray and type(expected) is np.ndarray:
        assert_allclose(actual, expected, atol=atol, rtol=rtol, equal_nan=True, err_msg=msg)
    elif isinstance(actual, dict):
        assert set(actual.keys()) == set(expected.keys())
        for key, x_val in actual.items():
            assert_close(
                x_val,
                expected[key],
                atol=atol,
                rtol=rtol,
                msg=f"At key {key!r}: {x_val} vs {expected[key]}",
            )
    elif isinstance(actual, str):
        assert actual == expected, msg
    elif _is_iterable(actual) and _is_iterable(expected):
        assert len(actual) == len(expected), msg
        for xi, yi in zip(actual, expected, strict=False):
            assert_close(xi, yi, atol=atol, rtol=rtol, msg=f"{xi} vs {yi}")
    else:
        assert actual == expected, msg


def assert_equal(actual, expected, prec=1e-5, msg=""):
    if prec > 0.0:
        return assert_close(actual, expected, atol=prec, msg=msg)
    if not msg:
        msg = f"{actual} vs {expected}"
    if isinstance(actual, numbers.Number) and isinstance(expected, numbers.Number):
        assert actual == expected, msg
    elif type(actual) is not type(expected):
        raise AssertionError(f"cannot compare {type(actual)} and {type(expected)}")
    elif torch.is_tensor(actual) and torch.is_tensor(expected):
        assert_tensors_equal(actual, expected, msg=msg)
    elif type(actual) is np.ndarray and type(expected) is np.ndarray:
        assert (actual == expected).all(), msg
    elif isinstance(actual, dict):
        assert set(actual.keys()) == set(expected.keys())
        for key, x_val in actual.items():
            assert_equal(
                x_val, expected[key], prec=0.0, msg=f"At key{key}: {x_val} vs {expected[key]}"
            )
    elif isinstance(actual, str):
        assert actual == expected, msg
    elif _is_iterable(actual) and _is_iterable(expected):
        assert len(actual) == len(expected), msg
        for xi, yi in zip(actual, expected, strict=False):
            assert_equal(xi, yi, prec=0.0, msg=f"{xi} vs {yi}")
    else:
        assert actual == expected, msg
