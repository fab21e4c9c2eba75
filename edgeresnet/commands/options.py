"""What the commands share: printing a result (table or JSON), and the option groups several commands take."""

from __future__ import annotations

import functools
import json

import click

def emit(result, as_json: bool, human) -> None:
    """Print a command's result: JSON (typed results through their `to_dict`), or `human(result)`."""
    if as_json:
        data = result.to_dict() if hasattr(result, "to_dict") else result
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        human(result)


def table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    cells = [[str(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (_, title) in enumerate(columns)]
    click.echo("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths)).rstrip())
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


class RegistryChoice(click.Choice):
    """A choice read from the target registry when the command line is parsed, not when it is defined,
    so a backend registered by a plug-in is offered too; an unknown name fails with the registry's own message."""

    def __init__(self, names, lookup):
        super().__init__([])
        self._names, self._lookup = names, lookup

    @property
    def choices(self):
        return tuple(self._names())

    @choices.setter
    def choices(self, _value):
        pass

    def convert(self, value, param, ctx):
        self._lookup(value)  # an unknown name: the registry's InputError, exit 2
        return value


def target_choice() -> RegistryChoice:
    from edgeresnet.pipeline.backends import get_target, target_names

    return RegistryChoice(target_names, get_target)


def scheme_choice() -> RegistryChoice:
    from edgeresnet.pipeline.backends import get_quant_scheme, scheme_names

    return RegistryChoice(scheme_names, get_quant_scheme)


def offered_by(offers) -> str:
    """The backends that offer a capability, for a command's help (`pipeline.backends.CapabilityOffer`s)."""
    return "; ".join(offer.line() for offer in offers) or "none of the installed backends"


def farm_addresses() -> str:
    """Each device farm's address form and what it names, for an `--rpc` option's help."""
    from edgeresnet.pipeline.backends import farm_offers

    return "; ".join(f"{offer.backend}: {offer.address}, {offer.help}" for offer in farm_offers()) or "none"


def _method_default() -> str:
    from edgeresnet.pipeline.backends import backend_defaults

    return ", ".join(f"{method} for {backend} targets" for backend, method in backend_defaults())


def with_backend_options(f):
    """Adds each registered backend's own options (`--<backend>-<field>`, from its options dataclass); the
    command gets the target's backend's filled options class as `backend_options` (None when none given)."""
    from edgeresnet.pipeline.backends import backend_options, options_for

    offered = backend_options()

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        values = {option.key: kwargs.pop(option.key) for option in offered}
        return f(*args, backend_options=options_for(kwargs["target"], values), **kwargs)
    for option in reversed(offered):
        kind = {"is_flag": True} if option.type is bool else {"type": option.type, "show_default": option.default is not None}
        wrapper = click.option(option.flag, option.key, default=option.default,
                               help=f"For {option.backend} targets: {option.help}", **kind)(wrapper)
    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")

# Options whose empty value means something: the checkpoint's top level as the weights' key prefix.
EMPTY_ALLOWED = {"weights_key"}


def refuse_empty_text(command: click.Command) -> click.Command:
    """Every text or path option and argument of `command` refuses an empty value (`--calib ""` from an unset shell
    variable): taken as given, "" is the current folder as a path, and silently the default where `or` picks one."""
    def check(ctx, param, value, then=None):
        values = value if isinstance(value, tuple) else (value,)
        if any(v == "" for v in values):
            raise click.BadParameter("must not be empty" + ("" if param.required else "; leave the option out for its default"),
                                     ctx=ctx, param=param)
        return then(ctx, param, value) if then else value

    for param in command.params:
        if param.name not in EMPTY_ALLOWED and isinstance(param.type, (click.types.StringParamType, click.Path)):
            param.callback = functools.partial(check, then=param.callback)
    return command


description_options = [
    click.option("--card", type=click.Path(dir_okay=False), default=None,
                 help="Model card (JSON, or TOML by suffix): num_classes, input_size, channels, mean, std, pixel_scale, resize, "
                      "channel_order, interpolation, antialias, class_names(_file), weights_key, preset; these options override it. What was used, and from where, goes into the report and manifest."),
    click.option("--preset", default=None, help="Preprocessing preset: imagenet (224, resize 256, ImageNet mean/std), "
                 "cifar (32, CIFAR mean/std), unit (plain [0,1] pixels) [default: the weights' metadata, else the architecture's: "
                 "imagenet for resnet18..152, cifar for resnet20..110]."),
    click.option("--num-classes", type=int, default=None, help="Classes of the head [default: rows of the checkpoint's fc.weight]."),
    click.option("--input-size", default=None, metavar="N|HxW", help="Network input size [default: the preset's]."),
    click.option("--channels", type=int, default=None, help="Input channels, 1 or 3 [default: the checkpoint's conv1.weight]."),
    click.option("--mean", default=None, metavar="M[,M,M]", help="Per-channel mean, on pixels scaled by --pixel-scale."),
    click.option("--std", default=None, metavar="S[,S,S]", help="Per-channel std, on pixels scaled by --pixel-scale."),
    click.option("--pixel-scale", type=float, default=None, help="1: mean/std are on [0,1] pixels (torchvision); 255: on 0..255 pixels."),
    click.option("--resize", type=int, default=None, help="Resize the shorter side to this, then center-crop to the input size (0: resize straight)."),
    click.option("--channel-order", type=click.Choice(["RGB", "BGR"], case_sensitive=False), default=None,
                 help="Channel order of 3-channel input; --mean/--std are given in this order."),
    click.option("--interpolation", type=click.Choice(["bilinear", "bicubic", "lanczos", "box", "hamming", "nearest"], case_sensitive=False),
                 default=None, help="Resize filter [default: bilinear]."),
    click.option("--antialias/--no-antialias", default=None,
                 help="Antialias when shrinking (Pillow, torchvision) or not (OpenCV; bilinear and nearest) [default: antialias]."),
    click.option("--class-names", "class_names_file", type=click.Path(dir_okay=False), default=None,
                 help="Class names: one per line, a JSON list, or a JSON object from index to name (id2label) "
                      "[default: the card's, else labelled class-folder names]."),
    click.option("--weights-key", default=None, metavar="PREFIX",
                 help="Which tensors of the checkpoint are the weights, by key prefix (e.g. state_dict_ema. for an EMA copy) "
                      "[default: the one prefix that fits the network]."),
]


def with_description(f):
    """Adds the model-description options; the command gets them as one `description` (None when none given)."""
    @functools.wraps(f)
    def wrapper(*args, card, preset, num_classes, input_size, channels, mean, std, pixel_scale, resize, channel_order,
                interpolation, antialias, class_names_file, weights_key, **kwargs):
        from edgeresnet.models import ModelDescription

        given = dict(card=card, preset=preset, num_classes=num_classes, channels=channels, pixel_scale=pixel_scale,
                     resize=resize, channel_order=channel_order, class_names_file=class_names_file,
                     interpolation=interpolation, antialias=antialias, weights_key=weights_key,
                     input_size=ModelDescription.parse_size(input_size) if input_size else None,
                     mean=ModelDescription.parse_floats(mean, "--mean") if mean else None,
                     std=ModelDescription.parse_floats(std, "--std") if std else None)
        given = {k: v for k, v in given.items() if v is not None}
        return f(*args, description=ModelDescription(**given) if given else None, **kwargs)
    for option in reversed(description_options):
        wrapper = option(wrapper)
    return wrapper

model_option = click.option("--model", default=None, help="Model name from `edgeresnet models` [default: resnet20-fmnist].")
weights_option = click.option("--weights", type=click.Path(dir_okay=False), default=None,
                              help="Weights instead of the shipped ones: a .pt/.pth/.ckpt checkpoint or a .safetensors file "
                                   "(torchvision key names, under any one prefix: Lightning, DataParallel, torch.compile, EMA).")


calib_options = [
    click.option("--calib", default=None, help="Calibration data: a folder of images, .npy/.npz, an IDX file, or 'fashion-mnist' [default: fashion-mnist:train for the reference model]."),
    click.option("--calib-samples", type=int, default=512, show_default=True, help="Calibration samples, drawn deterministically."),
    click.option("--method", type=click.Choice(["minmax", "entropy", "percentile", "mse", "auto"]), default=None,
                 help="Calibration method; auto calibrates with every method and ships the best on held-out calibration "
                      f"images [default: the target's quantization scheme's: {_method_default()}]."),
    click.option("--percentile", type=float, default=None,
                 help="The percentile method's clipping percentile, in [90, 100) [default: 99.999]."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration and evaluation sampling."),
]
eval_options = [
    click.option("--eval", "eval_data", default=None, help="Evaluation data, same forms as --calib [default: fashion-mnist:test, all 10,000 images]."),
    click.option("--eval-samples", type=int, default=None, help="Evaluate on a deterministic sample instead of all images."),
    click.option("--labels", type=click.Path(dir_okay=False), default=None,
                 help="Labels of an --eval folder: a CSV/TSV of filename,label (class index or name, header optional) "
                      "[default: class folders, or labels.csv/labels.tsv in a flat folder, or FOLDER.csv beside it]."),
]


def apply_options(options):
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate

