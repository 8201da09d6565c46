"""Orchestration: the glue between KFP/DVC and the stage functions, above every stage.

``stages`` runs one stage on artifact paths (workspace, step cache, progress lines) — the KFP components are
one call to it; ``parameters`` maps the pipeline's parameters onto the settings. It imports the stages'
packages; none of them imports it.
"""
