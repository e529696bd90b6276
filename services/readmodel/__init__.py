"""The read model: figures as stored by the worker, read back. Below the read
API, alerting and payroll, above core; the only way to get figures is
`services.readmodel.figures.Figures` (queries.py is its SQL, live.py what is true
now)."""
