"""One module per `faultflow` command (`faultflow step X-Y` is `x_y.py`, exporting `command`): options,
validation and the glue to the domain packages. The only package besides the `steps` root that imports click."""
