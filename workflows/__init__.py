"""faultflow workflows: the scenarios declared once, rendered to Argo with Hera."""
