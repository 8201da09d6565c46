"""Data: where the bars, news and posts come from and how they become clean daily tables.

``sources/`` speaks each API (and local exports), ``ingest`` upserts their rows into the raw store,
``clean`` turns raw rows into validated UTC daily bars, ``schemas`` says what a valid table is. The first
rung of the flow: it imports nothing from features, forecast, evaluation or operations.
"""
