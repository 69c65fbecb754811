"""DeepLabV3+ with a dilated ResNet-50 backbone (Keras 3)."""
