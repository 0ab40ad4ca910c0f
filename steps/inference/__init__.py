"""Inference traffic: the OpenAI-compatible client, the open-loop driver, request records and the modes."""
