"""A stand-in for oneDNN's refusal of empty batches, on every CPU.

On AVX-512 CPUs TensorFlow's oneDNN kernels reject zero-row inputs ("Matrix
size-incompatible: In[0]: [0,3] ..."); elsewhere they pass, so a test that merely runs
an empty batch proves nothing on most machines. A model that starts with
:class:`RefuseEmptyBatch` fails on an empty batch everywhere, so tests that put it in
front of the network check that calibkeras never runs the network on one.
"""

import keras
import tensorflow as tf

MESSAGE = "RefuseEmptyBatch: the network was run on an empty batch"


@keras.saving.register_keras_serializable(package="calibkeras_tests")
class RefuseEmptyBatch(keras.layers.Layer):
    """Identity on a non-empty batch; an InvalidArgumentError on an empty one."""

    def call(self, inputs):
        check = tf.debugging.assert_greater(tf.shape(inputs)[0], 0, message=MESSAGE)
        with tf.control_dependencies([check]):
            return tf.identity(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


def guarded(model):
    """``model`` behind a RefuseEmptyBatch layer (same weights, same outputs)."""
    inputs = keras.Input(model.inputs[0].shape[1:])
    return keras.Model(inputs, model(RefuseEmptyBatch()(inputs)))
