"""The model card :func:`tlestimators.save` writes next to a saved model (``README.md``).

A Hugging Face model card (YAML metadata through ``huggingface_hub.ModelCardData``, then
markdown) with: task, classes, backbone and weights source, strategy and its parameters,
training data summary, the scores the user computed, intended use and limits, and the
environment the model was saved in.
"""

from __future__ import annotations

import json

import numpy as np

from tlestimators.estimators._base import strategy_of

__all__ = ["model_card"]

def _final_step(est):
    steps = getattr(est, "steps", None)
    return steps[-1][1] if steps else est


def _table(rows, header) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _scores_from_search(est):
    report = getattr(est, "report_", None)
    if report is None:
        return None
    try:
        return report.head(10).to_markdown(index=False)
    except Exception:  # tabulate missing: plain text table
        return "```\n" + report.head(10).to_string(index=False) + "\n```"


def model_card(estimator, config, *, scores=None, data_summary=None) -> str:
    from huggingface_hub import ModelCardData

    final = _final_step(estimator)
    name = type(estimator).__name__
    strategy = strategy_of(getattr(final, "best_estimator_", final))
    bb = config.get("backbone") or {}
    classes = config.get("classes")
    meta = ModelCardData(library_name="tlestimators",
                         tags=["tlestimators", "scikit-learn", "transfer-learning"],
                         pipeline_tag=_pipeline_tag(bb.get("modality")))
    out = ["---", meta.to_yaml(), "---", "", f"# {name}", ""]
    out += [
        "A scikit-learn classifier saved with `tlestimators.save` (no pickle: JSON config, "
        "safetensors, skops). Load it with:", "", "```python", "import tlestimators",
        "model = tlestimators.load('<this directory>')", "model.predict(X)", "```", "",
        "## Task", "",
        f"- Strategy: {strategy}",
        f"- Classes ({len(classes) if classes else 'n/a'}): "
        + (", ".join(map(str, classes[:50])) + (" ..." if classes and len(classes) > 50 else "")
           if classes else "not fitted"),
        "",
        "## Backbone", "",
    ]
    if bb:
        out += [f"- Name: `{bb.get('name')}`", f"- Modality: {bb.get('modality')}",
                f"- Weights source: {bb.get('weights')}",
                f"- Weights fingerprint: `{bb.get('fingerprint')}`", ""]
    else:
        out += ["- (see the parameters below)", ""]
    out += _lora_lines(final, config)
    params = config.get("params") or {}
    out += ["## Parameters", "", _table(sorted((k, f"`{json.dumps(v)}`") for k, v in
                                               params.items()), ["parameter", "value"]), ""]
    out += ["## Training data", ""]
    summary = dict(data_summary or {})
    n_in = getattr(final, "n_features_in_", None)
    if n_in is not None:
        summary.setdefault("features per sample", n_in)
    if summary:
        out += [_table(summary.items(), ["fact", "value"]), ""]
    else:
        out += ["Not recorded: pass `data_summary={...}` to `tlestimators.save` (sizes, class "
                "balance, domains).", ""]
    out += ["## Scores", ""]
    search = _scores_from_search(estimator)
    if search:
        out += ["From `TransferSearchCV.report_`:", "", search, ""]
    if scores:
        out += [_table(((k, f"{v:.4f}" if isinstance(v, (float, np.floating)) else v)
                        for k, v in scores.items()), ["score", "value"]), ""]
    if not scores and not search:
        out += ["No scores recorded: pass `scores={...}` (computed on data not used for "
                "training) to `tlestimators.save`.", ""]
    out += [
        "## Intended use and limits", "",
        "- Classifies inputs of the backbone's modality into the classes above; it cannot "
        "output a class it was not trained on.",
        "- Accuracy holds for data like the training data; under a shift (new domain, new "
        "camera, new writing style) measure again before relying on it.",
        "- The backbone's own licence and biases carry over (weights source above).", "",
        "## Environment", "",
        _table(sorted((config.get("versions") or {}).items()), ["package", "version"]), "",
        f"Saved at {config.get('saved_at')}.", "",
    ]
    return "\n".join(out)


def _lora_lines(final, config) -> list:
    """What a LoRA fine-tune changed and what the directory holds of it."""
    lora = getattr(final, "lora_", None)
    if not isinstance(lora, dict) or lora.get("adapters") is None:
        return []
    st = lora.get("settings") or {}
    n = sum(int(t.numel()) for t in lora["adapters"].values())
    by_ref = any(isinstance(o, dict) and "$backbone_lora" in o
                 for o in config.get("objects") or ())
    out = [f"- Fine-tuned with LoRA ({st.get('family')} family, r={st.get('r')}, "
           f"alpha={st.get('lora_alpha')}): {n:,} adapter weights, merged into the backbone "
           "for prediction.",
           f"- Base weights fingerprint: `{lora.get('base_fingerprint')}`."]
    if by_ref:
        out.append("- Stored as the adapters only: `load` rebuilds the base backbone from its "
                   "package, refuses other weights (fingerprint), and merges them again.")
    return out + [""]


def _pipeline_tag(modality):
    return {"image": "image-classification", "text": "text-classification",
            "image-text": "zero-shot-image-classification"}.get(modality)
