"""A TF SavedModel of the weights, for TF Serving: forward text without memory."""

from xlnet.formats.original_checkpoint import assign_to_model


def write_saved_model(arrays, config, directory, seq_len, num_predict):
    """A SavedModel for TF Serving, forward text without memory, shapes fixed at `seq_len`
    tokens and `num_predict` targets: `serving_default` (input_ids, segment_ids, perm_mask,
    target_mapping -> logits, features) and `features` (input_ids, segment_ids -> features)."""
    import tensorflow as tf

    from xlnet.model.xlnet_lm import XLNetLM

    model = XLNetLM(config.replace(mem_len=0, bi_data=False, dropout=0.0, dropatt=0.0))
    assign_to_model(model, arrays, config)
    ids = tf.TensorSpec([None, seq_len], tf.int32, name="input_ids")
    segments = tf.TensorSpec([None, seq_len], tf.int32, name="segment_ids")
    perm_mask = tf.TensorSpec([None, seq_len, seq_len], tf.float32, name="perm_mask")
    target_mapping = tf.TensorSpec([None, num_predict, seq_len], tf.float32,
                                   name="target_mapping")

    @tf.function(input_signature=[ids, segments, perm_mask, target_mapping])
    def serving_default(input_ids, segment_ids, perm_mask, target_mapping):
        outputs = model({"input_ids": input_ids, "segment_ids": segment_ids,
                         "perm_mask": perm_mask, "target_mapping": target_mapping})
        return {"logits": outputs["logits"], "features": outputs["features"]}

    @tf.function(input_signature=[ids, segments])
    def features(input_ids, segment_ids):
        return {"features": model({"input_ids": input_ids,
                                   "segment_ids": segment_ids})["features"]}

    module = tf.Module()
    module.model = model
    tf.saved_model.save(module, directory, signatures={
        "serving_default": serving_default, "features": features})
    return directory
