;; An inferlet written by hand in WebAssembly text: a core module following the
;; component model's canonical ABI, as any language's toolchain produces it.
;; It reads its input, emits it back as an "echo" event and sets it as the
;; result; on the input "trap" it executes `unreachable`.
(module
  (import "pie:inferlet/runtime@0.2.0" "input" (func $input (param i32)))
  (import "pie:inferlet/output@0.2.0" "emit" (func $emit (param i32 i32 i32 i32)))
  (import "pie:inferlet/output@0.2.0" "set-result" (func $set_result (param i32 i32)))
  (memory (export "memory") 1)
  ;; 0..16: scratch for returned (ptr, len) pairs and the run result; 16..: "echo"; heap from 1024
  (data (i32.const 16) "echo")
  (global $heap (mut i32) (i32.const 1024))

  ;; A bump allocator: enough for an invocation that lives for one call.
  (func $realloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.xor (i32.sub (local.get $align) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.const 16)))))
    (local.get $p))

  (func (export "run") (result i32)
    (local $ptr i32) (local $len i32)
    (call $input (i32.const 0))
    (local.set $ptr (i32.load (i32.const 0)))
    (local.set $len (i32.load (i32.const 4)))
    ;; the input "trap" is the JSON text "\"trap\"": its second byte is 't'
    (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (i32.const 1))) (i32.const 116))
      (then unreachable))
    (call $emit (i32.const 16) (i32.const 4) (local.get $ptr) (local.get $len))
    (call $set_result (local.get $ptr) (local.get $len))
    ;; result<_, string>: discriminant 0 (ok) at offset 8
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.const 8))
)
