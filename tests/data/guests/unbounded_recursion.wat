;; Calls itself forever, with a few locals per frame to eat the stack faster.
(module
  (memory (export "memory") 1)
  (func $recurse (param $depth i64) (local $a i64) (local $b i64) (local $c i64)
    (local.set $a (local.get $depth))
    (call $recurse (i64.add (local.get $a) (i64.const 1))))
  (func (export "_start")
    (call $recurse (i64.const 0))))
