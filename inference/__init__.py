"""KServe transformer and predictor for BitPredict."""
