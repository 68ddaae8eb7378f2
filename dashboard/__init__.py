"""The ei_keras Streamlit dashboard: ``streamlit run dashboard/app.py``.

``app.py`` routes and ``app_pages/*.py`` lay out widgets; they call the package and a few
modules here: ``workspace`` (folders, names, uploads), ``cache`` (cached loaders),
``jobs`` (background generate and train jobs, read through ``ei_keras.jobs``),
``comparisons`` (``ei-keras compare`` jobs), ``forms`` (settings forms from the typed
configs), ``sources`` (where a trace comes from), ``analysis`` (one model on one trace),
``live_session`` (a Live page run) and ``words`` (package messages in the dashboard's
words). The plotly figures come from ``ei_keras.evaluation.figures``, shared with the
evaluation report.
"""
