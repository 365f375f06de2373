from samadapt.methods.add_decoder_layers.method import AddDecoderLayers

__all__ = ["AddDecoderLayers"]
