"""Pipeline steps as library functions: a typed config in, a typed result out.

Each step takes a ``clinsynth.task.Task`` (paths, taxonomy, LMs per role, privacy
policy) and its own config dataclass, opens LMs only through ``clinsynth.session``, and
returns a result dataclass that callers print. Command-line modules (``programs.*``,
``evals.run``, ``clinsynth.cli``) only parse flags into these configs; ``clinsynth run``
calls the steps in order.

    label      silver: data-to-label over corpus sentences or a file   (steps.label)
    bronze     label-to-data per category, filtered                    (steps.bronze)
    compile    tune either program with an optimizer from a registry   (steps.compile)
    train      SetFit on a mix, with a model card                      (steps.train)
    predict    a trained model over sentences or notes                 (steps.predict)
    export-onnx  a trained model as ONNX graphs for predict's fast path (steps.export_onnx)
    export     gold/silver/bronze as a datasets.DatasetDict or parquet (clinsynth.export)
"""
