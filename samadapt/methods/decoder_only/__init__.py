from samadapt.methods.decoder_only.method import DecoderOnly

__all__ = ["DecoderOnly"]
