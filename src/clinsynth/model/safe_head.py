"""A classifier head saved and loaded without pickle (issue 26 row 5).

SetFit saves its head with joblib (``model_head.pkl``), and loading a pickle runs whatever
code the file names: a model folder from elsewhere could run code on ``clinsynth predict``.
Here the head's numbers go to ``model_head.safetensors`` and its shape and settings to
``model_head.json``; loading rebuilds the head from those, so a model folder is data only.

Two heads are known, the two clinsynth trains: SetFit's differentiable ``SetFitHead``
(``end-to-end``) and scikit-learn's ``OneVsRestClassifier`` of ``LogisticRegression``
(``contrastive``), including its constant predictor for a category seen with one class only.

A folder holding a pickle (``model_head.pkl`` from an older clinsynth or from SetFit itself,
or any other pickle-based file) is refused unless the caller trusts it (``--trust-pickle``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clinsynth.errors import ClinsynthError, DataError

HEAD_WEIGHTS = "model_head.safetensors"
HEAD_CONFIG = "model_head.json"
PICKLE_HEAD = "model_head.pkl"  # what SetFit's save_pretrained writes (joblib)
FORMAT = 1
# Files that are pickles, or torch.save / joblib archives built on pickle: loading any of
# them may run code. Safetensors, JSON, ONNX and tokenizer files are data.
PICKLE_PATTERNS = ("*.pkl", "*.pickle", "*.joblib", "*.bin", "*.pt", "*.pth", "*.ckpt")


def pickle_files(model_dir: Path | str) -> list[Path]:
    """Pickle-based files anywhere in ``model_dir`` (sorted)."""
    model_dir = Path(model_dir)
    return sorted({p for pattern in PICKLE_PATTERNS for p in model_dir.rglob(pattern) if p.is_file()})


def refuse_pickles(model_dir: Path | str, trust_pickle: bool) -> None:
    """A ClinsynthError naming the first pickle file in ``model_dir`` unless ``trust_pickle``."""
    if trust_pickle:
        return
    found = pickle_files(model_dir)
    if found:
        raise ClinsynthError(
            f"{found[0]}: a pickle file in the model folder; loading it could run any code it holds, so it is "
            "not loaded. Models saved by this version of clinsynth hold no pickle: retrain, or, only if you "
            "trust where the folder came from, pass --trust-pickle (trust_pickle=True)"
        )


def save_head(head: Any, model_dir: Path | str) -> None:
    """Write ``head`` as ``model_head.safetensors`` + ``model_head.json`` and remove ``model_head.pkl``."""
    from safetensors.numpy import save_file

    model_dir = Path(model_dir)
    config, tensors = _head_state(head)
    save_file(tensors, str(model_dir / HEAD_WEIGHTS))
    (model_dir / HEAD_CONFIG).write_text(json.dumps({"format": FORMAT, **config}, indent=2) + "\n", encoding="utf-8")
    (model_dir / PICKLE_HEAD).unlink(missing_ok=True)  # SetFit's pickled copy: never needed again


def has_safe_head(model_dir: Path | str) -> bool:
    return (Path(model_dir) / HEAD_CONFIG).is_file() and (Path(model_dir) / HEAD_WEIGHTS).is_file()


def load_head(model_dir: Path | str, device: str = "cpu") -> Any:
    """The head saved by :func:`save_head`, rebuilt from its numbers (no pickle); DataError if malformed."""
    from safetensors.numpy import load_file

    model_dir = Path(model_dir)
    config_path = model_dir / HEAD_CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        tensors = load_file(str(model_dir / HEAD_WEIGHTS))
        kind = config["kind"]
        if kind == "setfit-head":
            return _setfit_head(config, tensors, device)
        if kind == "one-vs-rest":
            return _one_vs_rest(config, tensors)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not a readable classifier head ({type(exc).__name__}: {exc})", path=config_path) from exc
    raise DataError(f"unknown head kind {kind!r}", path=config_path, field="kind")


# -- the two heads ----------------------------------------------------------------------


def _head_state(head: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from setfit.modeling import SetFitHead
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor

    if isinstance(head, SetFitHead):
        config = {"kind": "setfit-head", "in_features": head.in_features, "out_features": head.out_features,
                  "temperature": head.temperature, "eps": head.eps, "bias": head.bias,
                  "multitarget": head.multitarget}  # fmt: skip
        tensors = {k: v.detach().cpu().numpy() for k, v in head.state_dict().items()}
        return config, tensors
    if isinstance(head, OneVsRestClassifier):
        binarizer = head.label_binarizer_
        estimators: list[dict[str, Any]] = []
        tensors = {}
        for i, est in enumerate(head.estimators_):
            if isinstance(est, LogisticRegression):
                estimators.append({"kind": "logistic", "classes": est.classes_.tolist()})
                tensors[f"{i}.coef"] = np.ascontiguousarray(est.coef_)
                tensors[f"{i}.intercept"] = np.ascontiguousarray(est.intercept_)
            elif isinstance(est, _ConstantPredictor):
                estimators.append({"kind": "constant", "y": np.asarray(est.y_).tolist()})
            else:
                raise ClinsynthError(f"cannot save a head estimator of type {type(est).__name__} without pickle")
        params = {k: v for k, v in head.estimator.get_params().items() if _json_value(v)}
        config = {"kind": "one-vs-rest", "y_type": binarizer.y_type_, "classes": binarizer.classes_.tolist(),
                  "n_features_in": int(head.n_features_in_), "logistic_params": params,
                  "estimators": estimators}  # fmt: skip
        return config, tensors
    raise ClinsynthError(f"cannot save a head of type {type(head).__name__} without pickle")


def _json_value(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _setfit_head(config: dict[str, Any], tensors: dict[str, np.ndarray], device: str) -> Any:
    import torch
    from setfit.modeling import SetFitHead

    head = SetFitHead(in_features=int(config["in_features"]), out_features=int(config["out_features"]),
                      temperature=float(config["temperature"]), eps=float(config["eps"]), bias=bool(config["bias"]),
                      device=device, multitarget=bool(config["multitarget"]))  # fmt: skip
    head.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})  # strict: all keys, right shapes
    return head.to(device)


def _one_vs_rest(config: dict[str, Any], tensors: dict[str, np.ndarray]) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
    from sklearn.preprocessing import LabelBinarizer

    n_features = int(config["n_features_in"])
    params = config.get("logistic_params", {})
    head = OneVsRestClassifier(LogisticRegression(**params))
    # What OneVsRestClassifier.fit sets (sklearn 1.x); predict / predict_proba read only these.
    binarizer = LabelBinarizer(sparse_output=True)
    binarizer.y_type_ = str(config["y_type"])
    binarizer.classes_ = np.asarray(config["classes"])
    binarizer.sparse_input_ = False
    head.label_binarizer_ = binarizer
    head.classes_ = binarizer.classes_
    head.n_features_in_ = n_features
    estimators: list[Any] = []
    for i, spec in enumerate(config["estimators"]):
        if spec["kind"] == "logistic":
            est = LogisticRegression(**params)
            est.classes_ = np.asarray(spec["classes"])
            est.coef_ = np.asarray(tensors[f"{i}.coef"], dtype=np.float64)
            est.intercept_ = np.asarray(tensors[f"{i}.intercept"], dtype=np.float64)
            if est.coef_.shape[-1] != n_features:
                raise ValueError(f"estimator {i}: {est.coef_.shape[-1]} features, expected {n_features}")
        elif spec["kind"] == "constant":
            est = _ConstantPredictor()
            est.y_ = np.asarray(spec["y"])
        else:
            raise ValueError(f"estimator {i}: unknown kind {spec['kind']!r}")
        est.n_features_in_ = n_features
        estimators.append(est)
    head.estimators_ = estimators
    return head
