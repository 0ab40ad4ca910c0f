"""faultflow steps: everything that runs inside a step container.

Modules are small and named for what they hold; heavy dependencies (kubernetes, httpx,
matplotlib) are imported inside the functions that need them so `faultflow step …` starts fast.
"""
