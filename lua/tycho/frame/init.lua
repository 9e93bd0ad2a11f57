--- tycho.frame: columnar frames. The class and its C side are core/frame.lua;
-- the operations that need no C of their own are ops.lua beside this file.
return require "tycho.core.frame"
