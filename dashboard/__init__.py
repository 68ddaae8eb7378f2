"""The ei_keras Streamlit dashboard: ``streamlit run dashboard/app.py``.

``app.py`` routes, ``app_pages/*.py`` lay out widgets, ``services.py`` holds everything
the pages call (workspace, cached loaders, subprocess jobs) and ``figures.py`` builds the
plotly figures (no Streamlit there).
"""
