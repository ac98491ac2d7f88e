//! `Module` for parameters, buffers and the std containers, so they nest naturally:
//! `Option<M>` and `Box<M>` are transparent, `Vec<M>` and `[M; N]` name children by
//! position (PyTorch's `ModuleList`), tuples likewise.

use super::{Buffer, Module, Param, Visitor, VisitorMut};

impl Module for Param {
    fn visit<'a>(&'a self, _v: &mut dyn Visitor<'a>) {}
    fn visit_mut(&mut self, _v: &mut dyn VisitorMut) {}
    fn register<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        v.param(name, self)
    }
    fn register_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        v.param(name, self)
    }
}

impl Module for Buffer {
    fn visit<'a>(&'a self, _v: &mut dyn Visitor<'a>) {}
    fn visit_mut(&mut self, _v: &mut dyn VisitorMut) {}
    fn register<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        v.buffer(name, self)
    }
    fn register_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        v.buffer(name, self)
    }
}

impl<M: Module> Module for Option<M> {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        if let Some(m) = self {
            m.visit(v)
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        if let Some(m) = self {
            m.visit_mut(v)
        }
    }
    fn register<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        if let Some(m) = self {
            m.register(name, v)
        }
    }
    fn register_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        if let Some(m) = self {
            m.register_mut(name, v)
        }
    }
    fn module_name(&self) -> String {
        self.as_ref().map(|m| m.module_name()).unwrap_or_default()
    }
    fn extra_repr(&self) -> String {
        self.as_ref().map(|m| m.extra_repr()).unwrap_or_default()
    }
    fn set_training(&mut self, training: bool) {
        if let Some(m) = self {
            m.set_training(training)
        }
    }
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        (**self).visit(v)
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        (**self).visit_mut(v)
    }
    fn register<'a>(&'a self, name: &str, v: &mut dyn Visitor<'a>) {
        (**self).register(name, v)
    }
    fn register_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        (**self).register_mut(name, v)
    }
    fn module_name(&self) -> String {
        (**self).module_name()
    }
    fn extra_repr(&self) -> String {
        (**self).extra_repr()
    }
    fn set_training(&mut self, training: bool) {
        (**self).set_training(training)
    }
}

impl<M: Module> Module for Vec<M> {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        for (i, m) in self.iter().enumerate() {
            m.register(&i.to_string(), v);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        for (i, m) in self.iter_mut().enumerate() {
            m.register_mut(&i.to_string(), v);
        }
    }
    fn module_name(&self) -> String {
        "ModuleList".into()
    }
}

impl<M: Module, const N: usize> Module for [M; N] {
    fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
        for (i, m) in self.iter().enumerate() {
            m.register(&i.to_string(), v);
        }
    }
    fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
        for (i, m) in self.iter_mut().enumerate() {
            m.register_mut(&i.to_string(), v);
        }
    }
    fn module_name(&self) -> String {
        "ModuleList".into()
    }
}

// Up to 16 elements: `sequential!` rejects more entries with a compile error.
macro_rules! tuple_module {
    ($($T:ident $i:tt),+) => {
        impl<$($T: Module),+> Module for ($($T,)+) {
            fn visit<'a>(&'a self, v: &mut dyn Visitor<'a>) {
                $(self.$i.register(stringify!($i), v);)+
            }
            fn visit_mut(&mut self, v: &mut dyn VisitorMut) {
                $(self.$i.register_mut(stringify!($i), v);)+
            }
            fn module_name(&self) -> String {
                "Tuple".into()
            }
        }
    };
}

tuple_module!(A 0);
tuple_module!(A 0, B 1);
tuple_module!(A 0, B 1, C 2);
tuple_module!(A 0, B 1, C 2, D 3);
tuple_module!(A 0, B 1, C 2, D 3, E 4);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14);
tuple_module!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, P 15);
