use nn::sequential;

fn main() {
    let _net = sequential![];
}
