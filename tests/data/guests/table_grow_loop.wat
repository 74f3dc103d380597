;; Grows its table one element at a time forever, ignoring failure (-1) and trying again.
(module
  (memory (export "memory") 1)
  (table $t 0 funcref)
  (func (export "_start")
    (loop $grow
      (drop (table.grow $t (ref.null func) (i32.const 1)))
      (br $grow))))
