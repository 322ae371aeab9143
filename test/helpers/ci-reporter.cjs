// mocha's spec reporter plus one closing line with every count, pending included, so that a CI log
// says "0 pending" in so many words (.ci/run; mocha loads reporters with require, hence CommonJS).
'use strict';
const Spec = require('mocha/lib/reporters/spec');

class CiReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once('end', () => {
      const s = this.stats;
      console.log(`tests: ${s.passes} passing, ${s.failures} failing, ${s.pending} pending (${s.tests} tests) in ${Math.round((s.duration ?? 0) / 1000)} s`);
    });
  }
}

module.exports = CiReporter;
