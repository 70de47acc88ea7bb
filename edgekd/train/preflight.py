"""Everything a run checks before its folder is touched: every name the config holds resolves,
every model it names builds for the data, every checkpoint it names is readable, of a registered
(or user-named) architecture and fits, and the flow's own inputs are read. A typo or a wrong file
costs seconds, not a trained teacher, and deletes nothing."""

from __future__ import annotations

from edgekd.config import Config
from edgekd.errors import ConfigError, EdgekdError, typed_first_line


def config_archs(cfg: Config) -> list[tuple[str, str, dict]]:
    """(config key, arch, kwargs) of every model the run builds: the teacher (unless an ensemble's
    members come from their files), the student, the TAKD assistants and the ensemble teachers."""
    t, takd, ensemble = cfg.teacher, cfg.distill.takd, cfg.distill.ensemble
    archs: list[tuple[str, str, dict]] = [] if ensemble.teacher_checkpoints else [("teacher.arch", t.arch, t.kwargs)]
    archs.append(("student.arch", cfg.student.arch, cfg.student.kwargs))
    archs += [(f"distill.takd.assistants[{i}]", a, {}) for i, a in enumerate(takd.assistants)]
    archs += [
        (f"distill.ensemble.teachers[{i}]", a, t.kwargs if a == t.arch else {}) for i, a in enumerate(ensemble.teachers)
    ]
    return archs


def resolve_names(cfg: Config) -> None:
    """Every registry name the config holds resolves (method, data source, export formats, the
    device); models are built for the data by :func:`preflight`."""
    from edgekd.formats import check_export_formats
    from edgekd.models.registry import MODELS
    from edgekd.train.methods import check_method_config
    from edgekd.train.runtime import select_device

    for key, arch, _ in config_archs(cfg):
        # a registry name is checked here, before the data loads; a `module:factory` is imported
        # and built by preflight (it may need the factory search path and the data's shape)
        if ":" not in arch and arch not in MODELS:
            raise ConfigError(f"config: {key}: {MODELS.unknown_message(arch)}")
    check_method_config(cfg)
    check_export_formats({"export.formats": cfg.export.formats, "export.teacher_formats": cfg.export.teacher_formats})
    select_device(cfg.runtime.device)


def preflight(run) -> None:
    """Build every model ``run``'s config names for its data, read every checkpoint it names, and
    run the flow's own check (``FLOWS`` entry's ``check``: FitNets' layer paths, the domain source
    data, the transfer set). ``run`` is a :class:`edgekd.train.context.RunContext` after ``setup``."""
    from edgekd.checkpoint import check_compatible, load_checkpoint, load_weights
    from edgekd.models import create_model
    from edgekd.train.flows import FLOWS
    from edgekd.train.methods import METHODS
    from edgekd.train.student_stage import check_output

    cfg, d, t = run.cfg, run.data, run.cfg.teacher
    ensemble = cfg.distill.ensemble
    archs = config_archs(cfg)
    s = cfg.student
    if s.mean is not None and len(s.mean) != d.in_channels:
        raise ConfigError(f"config: student.mean has {len(s.mean)} values, the data {d.in_channels} channel(s)")
    models = {}
    for key, arch, kwargs in archs:
        try:
            models[key] = model = create_model(arch, d.num_classes, d.in_channels, d.image_size, **kwargs)
            check_output(model, d, arch)
        except EdgekdError as exc:
            raise ConfigError(f"config: {key}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - whatever a factory or its model's forward raises
            # a factory's model that takes no such input (torchvision's resnet18 on 1-channel digits:
            # RuntimeError; its ViT: AssertionError) or kwargs the allocator refuses (width 1e5: 9e13
            # bytes, RuntimeError): each was a traceback, before the run's folder was touched
            size = "x".join(str(v) for v in (d.in_channels, *d.image_size))
            raise ConfigError(
                f"config: {key}: {arch} with kwargs {kwargs!r:.120} cannot be built for or run on the data's "
                f"{size} input ({typed_first_line(exc)})"
            ) from None
    teacher_files = [("teacher.checkpoint", t.checkpoint)] if t.checkpoint else []
    teacher_files += [
        (f"distill.ensemble.teacher_checkpoints[{i}]", p) for i, p in enumerate(ensemble.teacher_checkpoints)
    ]
    for key, path in teacher_files:
        run.checked_teacher(path, key)
    if cfg.student.checkpoint:
        ckpt = load_checkpoint(cfg.student.checkpoint)
        if ckpt["format"] != "state_dict":
            check_compatible(ckpt, d.describe(), cfg.student.checkpoint)
        load_weights(models["student.arch"], ckpt["state_dict"], cfg.student.checkpoint)
    check = getattr(FLOWS.get(METHODS.get(cfg.distill.method).flow), "check", None)
    if check is not None:
        check(run)
