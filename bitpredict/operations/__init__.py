"""Operations: what happens after a model is evaluated — registered, published, served, watched, replayed.

``registry`` (the MLflow champion), ``publish`` (the one published state), ``request_log`` (what was
answered), ``monitor`` / ``monitor_report`` / ``drift_check`` (measurement, its report, the check),
``replay_state`` / ``replay`` / ``replay_report`` (a replay's identity and state, the daily loop over history,
its report). The top of the flow: nothing in the domain imports it.
"""
