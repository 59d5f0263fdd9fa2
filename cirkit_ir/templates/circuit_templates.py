"""Ready-made symbolic circuits for common data: images and tables.

>>> from cirkit_ir.templates import circuit_templates
>>> circuit = circuit_templates.image_data(
...     (1, 28, 28), region_graph="quad-graph", input_layer="categorical", num_input_units=4,
...     sum_product_layer="tucker", num_sum_units=4, sum_weight_param="softmax")
>>> len(circuit.layers)
4163

Each template picks a region graph, an input layer per variable and a sum-product layer, and
hands them to `circuit_from_region_graph` (see `from_region_graph.py` for what is built).
Every option is checked up front: an unknown name raises `OptionError` listing the allowed
values, a bad number or shape raises `OptionError` saying what is expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cirkit_ir.errors import InputError, OptionError
from cirkit_ir.region_graph import (
    RegionGraph,
    chow_liu_tree,
    fully_factorized,
    linear_tree,
    poon_domingos,
    quad_graph,
    quad_tree,
    random_binary_tree,
)
from cirkit_ir.symbolic.circuit import Circuit
from cirkit_ir.templates.from_region_graph import (
    SUM_PRODUCT_LAYERS,
    InputFactory,
    check_positive_int,
    circuit_from_region_graph,
)
from cirkit_ir.templates.parameterization import (
    Parameterization,
    as_parameterization,
    build_parameter,
)
from cirkit_ir.templates.utils import (
    name_to_input_layer_factory,
    named_parameterizations_to_factories,
)

__all__ = [
    "IMAGE_INPUT_LAYERS",
    "IMAGE_REGION_GRAPHS",
    "SUM_PRODUCT_LAYERS",
    "SUM_WEIGHT_ACTIVATIONS",
    "TABULAR_INPUT_LAYERS",
    "TABULAR_REGION_GRAPHS",
    "image_data",
    "tabular_data",
]

IMAGE_REGION_GRAPHS: tuple[str, ...] = (
    "quad-tree-2",
    "quad-tree-4",
    "quad-graph",
    "poon-domingos",
    "random-binary-tree",
    "linear-tree",
    "chow-liu-tree",
)

IMAGE_INPUT_LAYERS: tuple[str, ...] = ("categorical", "binomial", "gaussian", "embedding")

TABULAR_REGION_GRAPHS: tuple[str, ...] = (
    "random-binary-tree",
    "linear-tree",
    "chow-liu-tree",
    "fully-factorized",
)

TABULAR_INPUT_LAYERS: tuple[str, ...] = ("categorical", "gaussian", "binomial", "embedding")

SUM_WEIGHT_ACTIVATIONS: tuple[str, ...] = (
    "softmax",
    "positive-clamp",
    "exp",
    "sigmoid",
    "softplus",
    "none",
)
"""The names `sum_weight_param` accepts (or give a `Parameterization`)."""

# The integer option each input layer needs (its number of values), if any.
_SIZE_OPTION: dict[str, str | None] = {
    "categorical": "num_categories",
    "binomial": "total_count",
    "gaussian": None,
    "embedding": "num_states",
}

# The parameters each input layer can take.
_LAYER_PARAMS: dict[str, tuple[str, ...]] = {
    "categorical": ("probs", "logits"),
    "binomial": ("probs", "logits"),
    "gaussian": ("mean", "stddev"),
    "embedding": ("weight",),
}

# Pixel values are 0..255: the size option of each image input layer.
_IMAGE_SIZES: dict[str, int] = {"categorical": 256, "binomial": 255, "embedding": 256}


# ---------------------------------------------------------------------------------------------
# Shared pieces


def _choose(value: object, allowed: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise OptionError.choose(what, value, allowed)
    return value


def _input_factory(
    name: str,
    num_channels: int,
    size: int | None,
    params: Mapping[str, Parameterization] | None,
    what: str,
) -> InputFactory:
    """A factory of `name` input layers with the given value count and parameterizations."""
    params = dict(params or {})
    allowed = _LAYER_PARAMS[name]
    for param_name, value in params.items():
        if param_name not in allowed:
            raise OptionError.choose(
                f"{what} parameter name for a {name} layer", param_name, allowed
            )
        if not isinstance(value, Parameterization):
            raise OptionError(f"{what}[{param_name!r}] must be a Parameterization, got {value!r}")
    if "probs" in params and "logits" in params:
        raise OptionError(f"{what}: give a parameterization for 'probs' or 'logits', not both")
    kwargs: dict[str, Any] = {
        "num_channels": num_channels,
        **named_parameterizations_to_factories(params),
    }
    size_option = _SIZE_OPTION[name]
    if size_option is not None:
        kwargs[size_option] = size
    return name_to_input_layer_factory(name, **kwargs)


def _weight_factory(sum_weight_param: str | Parameterization | None) -> Callable[[tuple], Any]:
    """`None` is libcirkit's default: a softmax over normal draws, as 'softmax'."""
    param = as_parameterization(
        "softmax" if sum_weight_param is None else sum_weight_param,
        "sum_weight_param",
        SUM_WEIGHT_ACTIVATIONS,
    )

    def factory(shape: tuple[int, ...]) -> Any:
        return build_parameter(param, shape)

    return factory


def _to_numpy(data: object, what: str) -> np.ndarray:
    if hasattr(data, "detach") and hasattr(data, "cpu"):
        data = data.detach().cpu().numpy()  # type: ignore[union-attr]
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as error:
        raise OptionError(f"{what} must be an array or tensor of numbers: {error}") from error
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise OptionError(f"{what} must hold numbers, got dtype {array.dtype}")
    if array.size == 0 or array.shape[0] == 0:
        raise OptionError(f"{what} must hold at least one sample, got shape {array.shape}")
    return array


def _check_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"{what} must be True or False, got {value!r}")
    return value


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise OptionError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


# ---------------------------------------------------------------------------------------------
# Images


def _check_image_shape(image_shape: object) -> tuple[int, int, int]:
    if (
        not isinstance(image_shape, Sequence)
        or isinstance(image_shape, str)
        or len(image_shape) != 3
        or any(
            isinstance(d, bool) or not isinstance(d, int | np.integer) or d <= 0
            for d in image_shape
        )
    ):
        raise OptionError(
            "image_shape must be (num_channels, height, width), three positive integers;"
            f" got {image_shape!r}"
        )
    c, h, w = (int(d) for d in image_shape)
    return c, h, w


def _image_pixels(data: object, shape: tuple[int, int, int]) -> np.ndarray:
    """Image data as an (N, H*W, C) array, from (N, C, H, W), (N, C, H*W) or, for C == 1,
    (N, H, W) or (N, H*W)."""
    c, h, w = shape
    array = _to_numpy(data, "data")
    n = array.shape[0]
    if array.shape[1:] in ((c, h, w), (c, h * w)):
        pixels = array.reshape(n, c, h * w)
    elif c == 1 and array.shape[1:] in ((h, w), (h * w,)):
        pixels = array.reshape(n, 1, h * w)
    else:
        accepted = [(c, h, w), (c, h * w)] + ([(h, w), (h * w,)] if c == 1 else [])
        raise OptionError(
            f"data of shape {array.shape} does not fit image_shape {shape}; expected"
            f" (N, *S) with S one of {accepted}"
        )
    return np.moveaxis(pixels, 1, 2)


def _image_chow_liu(
    data: object, shape: tuple[int, int, int], input_layer: str, num_bins: int | None
) -> RegionGraph:
    pixels = _image_pixels(data, shape).astype(np.float64).mean(axis=2)  # (N, H*W)
    if not np.isfinite(pixels).all():
        raise InputError("data holds NaN or infinite pixel values; chow-liu-tree needs finite ones")
    if input_layer == "gaussian" or num_bins is None:
        return chow_liu_tree(pixels, input_type="gaussian")
    bins = np.clip(np.floor(pixels * num_bins / 256.0), 0, num_bins - 1).astype(np.int64)
    return chow_liu_tree(bins, input_type="categorical", num_categories=num_bins)


def _image_region_graph(
    name: str,
    shape: tuple[int, int, int],
    input_layer: str,
    data: object,
    seed: int,
    num_bins: int | None,
) -> RegionGraph:
    _, height, width = shape
    num_pixels = height * width
    match name:
        case "quad-tree-2":
            return quad_tree((height, width), num_patch_splits=2)
        case "quad-tree-4":
            return quad_tree((height, width), num_patch_splits=4)
        case "quad-graph":
            return quad_graph((height, width))
        case "poon-domingos":
            delta = max(math.ceil(height / 8), math.ceil(width / 8))
            return poon_domingos((height, width), delta=delta)
        case "random-binary-tree":
            return random_binary_tree(num_pixels, seed=seed)
        case "linear-tree":
            return linear_tree(num_pixels)
        case _:
            if data is None:
                raise OptionError(
                    "region_graph='chow-liu-tree' learns the tree from data: pass data=, an"
                    " (N, C, H, W) array or tensor of training images"
                )
            return _image_chow_liu(data, shape, input_layer, num_bins)


def image_data(
    image_shape: tuple[int, int, int],
    region_graph: str = "quad-graph",
    *,
    input_layer: str,
    num_input_units: int,
    sum_product_layer: str,
    num_sum_units: int,
    sum_weight_param: str | Parameterization | None = None,
    input_params: Mapping[str, Parameterization] | None = None,
    num_classes: int = 1,
    use_mixing_weights: bool = True,
    data: object = None,
    seed: int = 42,
    num_bins: int | None = None,
    mi_chunk_size: int | None = None,
) -> Circuit:
    """A symbolic circuit over images of shape (C, H, W).

    The circuit has H*W variables, one per pixel in row-major order (pixel (i, j) is variable
    i * W + j), each with C channels: its batches are (B, C, H*W) and every input layer reads
    all C channels of its pixel.

    Args:
        image_shape: (num_channels, height, width).
        region_graph: 'quad-tree-2', 'quad-tree-4', 'quad-graph', 'poon-domingos' (delta =
            max(ceil(H/8), ceil(W/8))), 'random-binary-tree' (over the H*W pixels, drawn
            with `seed`), 'linear-tree' (pixels in row-major order) or 'chow-liu-tree'
            (learned from `data`).
        input_layer: 'categorical' (256 categories), 'binomial' (total count 255),
            'gaussian' or 'embedding' (256 states).
        num_input_units: units of each input layer.
        sum_product_layer: 'tucker', 'cp' or 'cp-t'.
        num_sum_units: units of each inner region.
        sum_weight_param: the parameterization of every dense and mixing weight: one of
            'softmax', 'positive-clamp', 'exp', 'sigmoid', 'softplus', 'none', or a
            `Parameterization`; None (the default) is 'softmax', as in libcirkit.
        input_params: the parameterization of the input layers' parameters, by name:
            'probs' or 'logits' (categorical, binomial), 'mean', 'stddev' (gaussian),
            'weight' (embedding). Parameters not named keep the layer's default.
        num_classes: units of the output (root) layer.
        use_mixing_weights: how a region with several partitions mixes them (see
            `cirkit_ir.templates.from_region_graph`).
        data: training images, (N, C, H, W) or (N, C, H*W) (also (N, H, W) or (N, H*W) when
            C == 1); required by 'chow-liu-tree' and ignored otherwise.
        seed: the seed of 'random-binary-tree'.
        num_bins: for 'chow-liu-tree' with a discrete input layer, the number of equal-width
            bins of 0..255 the pixel values are put in before measuring their categorical
            mutual information; None (the default) measures the cheaper Gaussian
            (correlation) mutual information of the raw values instead. Multi-channel pixels
            are averaged over their channels first.
        mi_chunk_size: libcirkit's chunk size for the mutual information; accepted so that
            ported calls run, and unused (the estimate takes all samples at once).

    Raises:
        OptionError: an unknown or malformed option; names list the allowed values.
    """
    shape = _check_image_shape(image_shape)
    region_graph = _choose(region_graph, IMAGE_REGION_GRAPHS, "region graph")
    input_layer = _choose(input_layer, IMAGE_INPUT_LAYERS, "input layer")
    sum_product_layer = _choose(sum_product_layer, SUM_PRODUCT_LAYERS, "sum-product layer")
    check_positive_int(num_input_units, "num_input_units")
    check_positive_int(num_sum_units, "num_sum_units")
    check_positive_int(num_classes, "num_classes")
    _check_bool(use_mixing_weights, "use_mixing_weights")
    _check_seed(seed)
    if mi_chunk_size is not None:
        check_positive_int(mi_chunk_size, "mi_chunk_size")
    if num_bins is not None and (
        isinstance(num_bins, bool) or not isinstance(num_bins, int) or not 2 <= num_bins <= 256
    ):
        raise OptionError(f"num_bins must be None or an integer in 2..256, got {num_bins!r}")
    if input_params is not None and not isinstance(input_params, Mapping):
        raise OptionError(
            f"input_params must map parameter names to Parameterizations, got {input_params!r}"
        )
    weight_factory = _weight_factory(sum_weight_param)
    input_factory = _input_factory(
        input_layer, shape[0], _IMAGE_SIZES.get(input_layer), input_params, "input_params"
    )
    rg = _image_region_graph(region_graph, shape, input_layer, data, seed, num_bins)
    return circuit_from_region_graph(
        rg,
        input_factory=input_factory,
        sum_product=sum_product_layer,
        num_input_units=num_input_units,
        num_sum_units=num_sum_units,
        num_classes=num_classes,
        sum_weight_factory=weight_factory,
        use_mixing_weights=use_mixing_weights,
    )


# ---------------------------------------------------------------------------------------------
# Tables


def _column_spec(
    spec: object, column: int | None, data: np.ndarray | None
) -> tuple[str, int | None, dict[str, Parameterization]]:
    """(layer name, size option, parameterizations) of one column's input layer spec."""
    where = "input_layers" if column is None else f"input_layers[{column}]"
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise OptionError(
            f"{where} must be a layer name or a dict {{'name': ..., 'args': {{...}}}}, got {spec!r}"
        )
    unknown = [key for key in spec if key not in ("name", "args")]
    if unknown:
        raise OptionError.choose(f"{where} key", unknown[0], ("name", "args"))
    if "name" not in spec:
        raise OptionError(f"{where} needs a 'name', one of {list(TABULAR_INPUT_LAYERS)}")
    name = _choose(spec["name"], TABULAR_INPUT_LAYERS, f"{where} input layer")
    args = spec.get("args", {}) or {}
    if not isinstance(args, Mapping):
        raise OptionError(f"{where}['args'] must be a dict, got {args!r}")
    size_option = _SIZE_OPTION[name]
    allowed = ((size_option,) if size_option else ()) + _LAYER_PARAMS[name]
    size: int | None = None
    params: dict[str, Parameterization] = {}
    for key, value in args.items():
        if key not in allowed:
            raise OptionError.choose(f"{where} argument of a {name} layer", key, allowed)
        if key == size_option:
            size = check_positive_int(value, f"{where} {key}")
        else:
            params[key] = value
    if size_option is not None and size is None:
        if data is None:
            raise OptionError(
                f"{where}: a {name} layer needs args={{'{size_option}': ...}} (or pass data="
                " to infer it from the largest value)"
            )
        columns = data if column is None else data[:, column : column + 1]
        largest = _largest_value(columns, "data" if column is None else f"data column {column}")
        size = largest if name == "binomial" else largest + 1
        size = max(size, 1)
    return name, size, params


def _largest_value(values: np.ndarray, what: str) -> int:
    """The largest value of discrete data, which must hold non-negative whole numbers."""
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        raise InputError(
            f"{what} must hold whole numbers 0, 1, 2, ... for a discrete input layer, got"
            f" {values[bad][0].item()!r}; fix or drop such rows, or use a gaussian layer"
        )
    return int(np.max(values))


def _table_chow_liu(data: np.ndarray, names: list[str], sizes: list[int | None]) -> RegionGraph:
    discrete = all(name != "gaussian" for name in names)
    if discrete:
        num_values = [s + 1 if n == "binomial" else s for n, s in zip(names, sizes, strict=True)]
        largest = _largest_value(data, "data")
        num_categories = max([largest + 1, *(v for v in num_values if v is not None)])
        return chow_liu_tree(data, input_type="categorical", num_categories=num_categories)
    return chow_liu_tree(data.astype(np.float64), input_type="gaussian")


def tabular_data(
    region_graph: str = "random-binary-tree",
    *,
    num_features: int | None = None,
    data: object = None,
    input_layers: str | Mapping[str, Any] | Sequence[str | Mapping[str, Any]],
    num_input_units: int,
    sum_product_layer: str,
    num_sum_units: int,
    num_classes: int = 1,
    sum_weight_param: str | Parameterization | None = None,
    use_mixing_weights: bool = True,
    seed: int = 42,
) -> Circuit:
    """A symbolic circuit over tables: one variable per column, one channel.

    Batches are (B, 1, D) or (B, D) for D columns.

    Args:
        region_graph: 'random-binary-tree' (drawn with `seed`), 'linear-tree' (columns in
            order), 'chow-liu-tree' (learned from `data`) or 'fully-factorized'.
        num_features: the number of columns D; may be left out when `input_layers` is a list
            or `data` is given.
        data: an (N, D) array or tensor; required by 'chow-liu-tree' (categorical mutual
            information when every column is discrete, else Gaussian mutual information of
            the values), and used to infer a categorical column's number of categories when
            it is not given.
        input_layers: the input layer of every column (one spec), or a list with one spec
            per column. A spec is a dict ``{'name': ..., 'args': {...}}`` or just a name.
            Names: 'categorical' (args ``num_categories``), 'gaussian', 'binomial' (args
            ``total_count``), 'embedding' (args ``num_states``). ``args`` may also map a
            parameter name ('probs', 'logits', 'mean', 'stddev', 'weight') to a
            `Parameterization`.
        num_input_units: units of each input layer.
        sum_product_layer: 'tucker', 'cp' or 'cp-t'.
        num_sum_units: units of each inner region.
        num_classes: units of the output layer.
        sum_weight_param: as for `image_data`.
        use_mixing_weights: as for `image_data`.
        seed: the seed of 'random-binary-tree'.

    Raises:
        OptionError: an unknown or malformed option; names list the allowed values.
    """
    region_graph = _choose(region_graph, TABULAR_REGION_GRAPHS, "region graph")
    sum_product_layer = _choose(sum_product_layer, SUM_PRODUCT_LAYERS, "sum-product layer")
    check_positive_int(num_input_units, "num_input_units")
    check_positive_int(num_sum_units, "num_sum_units")
    check_positive_int(num_classes, "num_classes")
    _check_bool(use_mixing_weights, "use_mixing_weights")
    _check_seed(seed)
    table: np.ndarray | None = None
    if data is not None:
        table = _to_numpy(data, "data")
        if table.ndim != 2:
            raise OptionError(f"data must be an (N, D) table, got shape {table.shape}")

    # The number of columns, from whichever of the three sources are given; they must agree.
    sources: dict[str, int] = {}
    if num_features is not None:
        sources["num_features"] = check_positive_int(num_features, "num_features")
    per_column = isinstance(input_layers, Sequence) and not isinstance(input_layers, str)
    if per_column:
        if len(input_layers) == 0:
            raise OptionError("input_layers is an empty list; give one spec per column")
        sources["len(input_layers)"] = len(input_layers)
    if table is not None:
        sources["data.shape[1]"] = table.shape[1]
    if not sources:
        raise OptionError(
            "cannot tell the number of columns: pass num_features=, data=, or a list of"
            " input_layers with one spec per column"
        )
    if len(set(sources.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in sources.items())
        raise OptionError(f"the number of columns disagrees: {listed}")
    num_columns = next(iter(sources.values()))

    if per_column:
        specs = [_column_spec(s, i, table) for i, s in enumerate(input_layers)]  # type: ignore[arg-type]
    else:
        specs = [_column_spec(input_layers, None, table)] * num_columns
    factories = {
        column: _input_factory(name, 1, size, params, f"input_layers[{column}]['args']")
        for column, (name, size, params) in enumerate(specs)
    }

    match region_graph:
        case "random-binary-tree":
            rg = random_binary_tree(num_columns, seed=seed)
        case "linear-tree":
            rg = linear_tree(num_columns)
        case "fully-factorized":
            rg = fully_factorized(num_columns)
        case _:
            if table is None:
                raise OptionError(
                    "region_graph='chow-liu-tree' learns the tree from data: pass data=, an"
                    " (N, D) array or tensor"
                )
            rg = _table_chow_liu(table, [s[0] for s in specs], [s[1] for s in specs])

    return circuit_from_region_graph(
        rg,
        input_factory=factories,
        sum_product=sum_product_layer,
        num_input_units=num_input_units,
        num_sum_units=num_sum_units,
        num_classes=num_classes,
        sum_weight_factory=_weight_factory(sum_weight_param),
        use_mixing_weights=use_mixing_weights,
    )
