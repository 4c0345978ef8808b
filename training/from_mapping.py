"""Training through a dataset mapping: what the mapping adds to the features, what a version trained
through it carries, and the model-shape settings it overrides."""

from __future__ import annotations

from pathlib import Path


def mapping_extras(mapping):
    """What a mapping adds to the features: its passed-through columns, its dates' precision and the
    encodings it asks for."""
    from training.fit import Extras

    return Extras(*mapping.extra_columns, precision=mapping.field_precision, encodings=mapping.extra_encodings)


EXAMPLE_RECORDS = 2


def carried_mapping(path: str, mapping, raw) -> dict:
    """What a version trained through a mapping carries, so the service takes the extract's own
    records: the mapping's rules as written, and a few records of the extract (labels left out)."""
    import yaml

    from features.mapping import columns_read

    labels = {rule.get("column") for rule in mapping.labels.values()}
    read = set(columns_read(mapping, labels=False))
    example = raw[[c for c in raw.columns if c in read]].head(EXAMPLE_RECORDS)
    return {"rules": yaml.safe_load(Path(path).read_text()), "name": mapping.name,
            # The extract's other columns: a record may carry them (its export's whole row); they are not read.
            "columns": [str(c) for c in raw.columns if c not in labels],
            "example": example.astype(object).where(example.notna(), None).to_dict(orient="records")}


def with_training_overrides(config, overrides: dict, where: str):
    """The mapping's model-shape settings replace the configured ones, checked as the config file's are."""
    from dataclasses import replace

    from models.config import with_settings

    return replace(config, training=with_settings(config.training, overrides, "training", where))
