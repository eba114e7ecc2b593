"""Model configs as data: checked against the catalog and the constructors, then built without Hydra.

A model config read from a file (the ``meta["model"]`` of a weights file, a checkpoint's ``sr_meta``, an export's
metadata) describes which network to build; it never decides which code runs. So it is never passed to
``hydra.utils.instantiate`` (which resolves a dotted ``_target_`` attribute by attribute: through a module's globals a
name can reach torch, pathlib or os). Instead:

- its ``_target_`` must be exactly one of the catalog's network names (`sr_lightning.archs.catalog`);
- every option must be a parameter of that constructor, with a plain value: None, a bool, a bounded int or finite
  float, a short string, a short list or mapping of those, or (for a block option such as ``conv3x3``) a block
  factory node: a catalog ``_target_`` with ``_partial_: true`` and plain options of that factory;
- the network is sized on the meta device before any memory is taken, and refused above `MAX_PARAMETERS`.

Anything else is a `ModelConfigError` naming the file and the offending key, raised before any object is built.
The user's own composed configs (``model=efdn ...``) take the same route when they describe weights to load.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from sr_lightning.archs.catalog import ARCHITECTURES, architecture_by_target, block_factory

#: bounds on plain values: a config that states a network larger than any SR network is refused, not built
MAX_INT = 4096
MAX_FLOAT = 1e6
MAX_STRING = 128
MAX_ITEMS = 32
MAX_PARAMETERS = 100_000_000
_PLAIN_SCALARS = (bool, int, float, str, type(None))


class ModelConfigError(ValueError):
    """A model config that this package will not build (unknown network, option or value)."""


def _fail(where: str, key: str, why: str) -> ModelConfigError:
    return ModelConfigError(f"{where}: model config key '{key}' {why}; nothing was built")


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain ones (interpolations left as strings, refused below)."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=False)
    return value


def _scalar(value: Any, where: str, key: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise _fail(where, key, f"is {value}, beyond the bound {MAX_INT}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_FLOAT:
            raise _fail(where, key, f"is {value}, not a finite number within {MAX_FLOAT:g}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _fail(where, key, f"is a string of {len(value)} characters (at most {MAX_STRING})")
        if "${" in value:
            raise _fail(where, key, f"is an interpolation {value!r}: files hold plain values only")
        return value
    raise _fail(where, key, f"has a value of type {type(value).__name__}, not a plain value")


def _value(value: Any, where: str, key: str) -> Any:
    """A plain option value: a scalar, a short list / mapping of scalars, or a block factory node."""
    value = _plain(value)
    if isinstance(value, Mapping):
        if "_target_" in value:
            return _factory_node(value, where, key)
        if len(value) > MAX_ITEMS:
            raise _fail(where, key, f"is a mapping of {len(value)} entries (at most {MAX_ITEMS})")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or isinstance(v, (Mapping, list, tuple)):
                raise _fail(where, f"{key}.{k}", "is not a plain value under a string key")
            out[k] = _scalar(v, where, f"{key}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise _fail(where, key, f"is a list of {len(value)} items (at most {MAX_ITEMS})")
        return [_scalar(v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    return _scalar(value, where, key)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a checked plain value has the constructor's annotated type (unknown annotations accept anything)."""
    origin = typing.get_origin(hint)
    if hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    factory = isinstance(value, Mapping) and "_target_" in value
    base = origin or hint
    if base in (collections.abc.Callable, Callable):
        return factory
    if isinstance(base, type) and issubclass(base, Mapping):
        return isinstance(value, Mapping) and not factory
    if isinstance(base, type) and issubclass(base, collections.abc.Sequence):
        return isinstance(value, list)
    return True


def _options(
    fn: Callable[..., Any], options: Mapping[str, Any], where: str, prefix: str, skip: tuple[str, ...]
) -> dict[str, Any]:
    """``options`` checked against ``fn``'s signature (``skip``: parameters the caller passes itself)."""
    params = inspect.signature(fn).parameters
    hints = typing.get_type_hints(fn.__init__ if isinstance(fn, type) else fn)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    out = {}
    for key, value in options.items():
        if not isinstance(key, str) or key in skip or key not in params or params[key].kind not in named:
            accepted = [p for p in params if p not in skip and params[p].kind in named]
            raise _fail(where, f"{prefix}{key}", f"is not an option of {getattr(fn, '__name__', fn)} ({accepted})")
        out[key] = _value(value, where, f"{prefix}{key}")
        if key in hints and not _matches(out[key], hints[key]):
            raise _fail(where, f"{prefix}{key}", f"= {value!r} is not of the option's type {hints[key]}")
    return out


def _factory_node(node: Mapping[str, Any], where: str, key: str) -> dict[str, Any]:
    target = node.get("_target_")
    found = block_factory(target) if isinstance(target, str) else None
    if found is None:
        raise _fail(where, f"{key}._target_", f"= {target!r} is not one of this package's block factories")
    if node.get("_partial_") is not True:
        raise _fail(where, f"{key}._partial_", "must be true (a block factory is called with the channel counts)")
    options = {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}
    checked = _options(found[1], options, where, f"{key}.", skip=("in_channels", "out_channels"))
    return {"_target_": found[0], "_partial_": True, **checked}


def check_model_config(config: Any, where: str = "model config") -> dict[str, Any]:
    """``config`` as a plain, checked dict with today's ``_target_`` names; `ModelConfigError` otherwise."""
    config = _plain(config)
    if not isinstance(config, Mapping):
        raise ModelConfigError(f"{where}: the model config is a {type(config).__name__}, not a mapping")
    target = config.get("_target_")
    arch = architecture_by_target(target) if isinstance(target, str) else None
    if arch is None:
        names = ", ".join(a.target for a in ARCHITECTURES)
        raise _fail(where, "_target_", f"= {target!r} is not one of this package's networks ({names})")
    options = {k: v for k, v in config.items() if k != "_target_"}
    return {"_target_": arch.target, **_options(arch.cls, options, where, "", skip=())}


def _constructor_args(checked: Mapping[str, Any]) -> dict[str, Any]:
    args = {}
    for key, value in checked.items():
        if key == "_target_":
            continue
        if isinstance(value, Mapping) and "_target_" in value:  # a checked block factory node
            _, factory = block_factory(value["_target_"])  # type: ignore[misc]
            value = functools.partial(factory, **{k: v for k, v in value.items() if not k.startswith("_")})
        args[key] = value
    return args


@functools.lru_cache(maxsize=64)
def _elements(checked_json: str) -> int:
    """Parameters and buffers of a checked config's network, counted on the meta device (no memory taken)."""
    checked = json.loads(checked_json)
    cls = architecture_by_target(checked["_target_"]).cls  # type: ignore[union-attr]
    with torch.device("meta"):
        sized = cls(**_constructor_args(checked))
    return sum(t.numel() for t in (*sized.parameters(), *sized.buffers()))


def check_network_size(config: Any, where: str = "model config") -> dict[str, Any]:
    """`check_model_config`, then the network's size against `MAX_PARAMETERS`; the checked config."""
    checked = check_model_config(config, where)
    count = _elements(json.dumps(checked, sort_keys=True))
    if count > MAX_PARAMETERS:
        raise ModelConfigError(f"{where}: the model config describes {count:,} tensor elements (at most "
                               f"{MAX_PARAMETERS:,}); nothing was built")  # fmt: skip
    return checked


def build_network(config: Any, where: str = "model config") -> nn.Module:
    """The network a model config describes, built after `check_network_size`."""
    checked = check_network_size(config, where)
    return architecture_by_target(checked["_target_"]).cls(**_constructor_args(checked))  # type: ignore[union-attr]
