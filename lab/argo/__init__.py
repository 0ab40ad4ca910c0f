"""Real Argo Workflows in the real lab (lab.nodes): its controller and executor built from source
(lab.tools.ARGO_LINES), installed from Argo's own manifests (`manifests`, `install`), with an S3
artifact repository a user would also run (`artifacts`, `s3`)."""
