// Replaces a kernel tfjs registered for a backend with one of pipec's, keeping the rest of its
// registration (its setupFunc binds the backend's own functions, which the replacement may still call for
// the cases it leaves to stock). Every kernel pipec swaps in goes through here.
import * as tf from '@tensorflow/tfjs-core';

/**
 * `make` gets the registered kernel and returns the new kernelFunc. False, and nothing changed, when the
 * backend has no such kernel (its package was not loaded).
 */
export function replaceKernel(name: string, backendName: string, make: (stock: tf.KernelConfig) => tf.KernelFunc): boolean {
  const stock = tf.getKernel(name, backendName);
  if (!stock) return false;
  tf.unregisterKernel(name, backendName);
  tf.registerKernel({ ...stock, kernelFunc: make(stock) });
  return true;
}
