"""Pipeline plumbing that every stage may use: where each artifact lives, the run lock, MLflow wiring.

``stage_table`` names the stages, their functions (by name, never imported) and their artifact paths
(``data_path``, ``serving_store``), and writes ``dvc.yaml``; ``runlock`` keeps two runs off one data dir;
``tracking`` picks the MLflow store and answers which version is the champion. It sits just above the core
(config, errors, log, runtime, storage, docs_blocks) and below data, so any stage can import it
without a circle.
"""
