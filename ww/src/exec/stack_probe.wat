;; The native-stack probe (src/exec/stack_probe.rs): a loop that runs a broad mix of
;; wasmi instruction handlers (globals, locals, memory, integer and float arithmetic,
;; select, direct and indirect calls, br_table, br_if) `n` times and returns 3n.
;; If any handler's tail call to the next one is not compiled into a jump, every
;; executed instruction leaves a native frame behind and the probe's small stack
;; overflows within a few thousand iterations.
;; After an edit, regenerate stack_probe.wasm (tests/exec_sandbox.rs checks it):
;;   WW_BLESS=1 cargo test -p ww --test exec_sandbox stack_probe
(module
  (type $step (func (param i64) (result i64)))
  (memory 1)
  (global $sum (mut i64) (i64.const 0))
  (global $flip (mut i32) (i32.const 0))
  (table 1 funcref)
  (elem (i32.const 0) $next)
  (func $next (type $step) (param $x i64) (result i64)
    local.get $x
    i64.const 1
    i64.add)
  (func (export "spin") (param $n i64) (result i64)
    (local $i i64) (local $acc i64) (local $f f64)
    (loop $again
      ;; globals
      global.get $sum
      i64.const 3
      i64.add
      global.set $sum
      global.get $flip
      i32.const 1
      i32.xor
      global.set $flip
      ;; memory
      i32.const 8
      local.get $i
      i64.store
      i32.const 8
      i64.load
      local.set $acc
      i32.const 16
      global.get $flip
      i32.store8
      ;; arithmetic and select
      local.get $acc
      local.get $i
      i64.mul
      i64.const 7
      i64.rem_u
      local.set $acc
      local.get $acc
      local.get $i
      local.get $i
      i64.const 1
      i64.and
      i32.wrap_i64
      select
      local.set $acc
      local.get $f
      f64.const 1.5
      f64.add
      local.set $f
      ;; calls
      local.get $acc
      call $next
      local.set $acc
      local.get $acc
      i32.const 0
      call_indirect (type $step)
      local.set $acc
      ;; a jump table
      (block $even
        (block $odd
          local.get $i
          i32.wrap_i64
          i32.const 3
          i32.and
          br_table $even $odd $even $odd))
      ;; the counter
      local.get $i
      i64.const 1
      i64.add
      local.tee $i
      local.get $n
      i64.lt_u
      br_if $again)
    global.get $sum))
