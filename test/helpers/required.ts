// What a suite needs that a machine may lack: PyTorch, a WebGPU adapter, the native tensorflow backend.
// Locally a missing piece skips the suite and prints why. In CI it is a failure, so that CI cannot be
// green with a suite skipped: .ci/run sets PIPEC_REQUIRE_ALL=1, and a CI service's CI=true counts too
// (PIPEC_REQUIRE_ALL=0 turns it off).
export const REQUIRE_ALL = process.env.PIPEC_REQUIRE_ALL === '1' || (process.env.PIPEC_REQUIRE_ALL !== '0' && /^(1|true|yes)$/i.test(process.env.CI ?? ''));

/** Skips the running hook or test with its reason, or, where everything is required, fails with it. */
export function unavailable(ctx: Mocha.Context, what: string, fix: string): never {
  if (REQUIRE_ALL) throw new Error(`required here (PIPEC_REQUIRE_ALL / CI) but missing: ${what}; ${fix}`);
  console.log(`      skipped: ${what}; ${fix}`);
  ctx.skip();
}
