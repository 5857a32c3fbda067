"""The dashboard: one light process serving a live page and its JSON API over the control
store (`server`), started by `redray start --head --dashboard-port N` or
`init(include_dashboard=True)` (`launcher`). It only reads Redis: it never sits on the task
path."""
