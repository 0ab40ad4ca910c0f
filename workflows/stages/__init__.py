"""The building blocks scenarios share: images, host paths, common stages and parameters (`common`), the
GPU stages and parameters, and the network stages."""
