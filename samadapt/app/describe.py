"""What a method does with text and with the image, in words built from the method's own flags
(`uses_text`, `conditions_encoder`, `needs_training`, `auxiliary_loss_names`: samadapt/methods/base.py), so the
sentence stays right for every registered method and for any method added later."""

from samadapt.methods.base import Method

REENCODES = "each request encodes the image again"
ENCODED_ONCE = "The image is encoded once and every prompt on it reuses that embedding."


def describe_method(method: Method | type[Method], reuses_image_embedding: bool | None = None) -> str:
    """A few sentences for `method`, a class from METHODS or a built instance (an instance also knows its
    auxiliary losses, e.g. PLM's "pmm" when PMM is on).

    reuses_image_embedding: the predictor's rule for one run (SamAdaptPredictor.reuses_image_embedding, which is
    also False when the run trained the image encoder); None takes the method's own, `not conditions_encoder`.
    """
    if reuses_image_embedding is None:
        reuses_image_embedding = not method.conditions_encoder
    sentences = [] if method.needs_training else ["Trains nothing: frozen models run as they are."]
    if method.uses_text and method.conditions_encoder:
        sentences.append(f"Reads the text while it encodes the image, so {REENCODES}, with its text.")
    elif method.conditions_encoder:
        sentences.append(f"Reads no text. Its trained weights sit inside the image encoder, so {REENCODES}.")
    else:
        sentences.append("Reads the text only after the image encoder, in the prompts or the mask decoder."
                         if method.uses_text else "Reads no text.")
        sentences.append(ENCODED_ONCE if reuses_image_embedding
                         else f"Its image encoder was trained too, so {REENCODES}.")
    losses = list(getattr(method, "auxiliary_loss_names", ()))
    if losses:
        sentences.append(f"Training added the auxiliary loss{'es' if len(losses) > 1 else ''} {', '.join(losses)}.")
    return " ".join(sentences)
