/*
 * EMBED_CELLS runs on CPU; EMBED_CELLS_GPU is the same step for embedders that train or run neural
 * networks (scVI) when --gpu is set (label process_gpu, routed to accelerator nodes).
 */
def embedCellsScript(task, meta, h5ad, model) {
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.${model}"
    return """
    embed_cells.py \\
        --h5ad ${h5ad} \\
        --model ${model} \\
        --out ${prefix}.embedding.h5ad \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """
}

def embedCellsStub(task, meta, model) {
    def prefix = task.ext.prefix ?: "${meta.id}.${model}"
    return """
    touch ${prefix}.embedding.h5ad
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}

process EMBED_CELLS {
    tag "${meta.id} ${model}"
    label 'process_medium'
    container 'ghcr.io/pertprobe/base:0.1.0'

    input:
    tuple val(meta), path(h5ad), val(model)

    output:
    tuple val(meta), val(model), path("*.embedding.h5ad"), emit: embedding
    path "versions.yml"                                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    embedCellsScript(task, meta, h5ad, model)

    stub:
    embedCellsStub(task, meta, model)
}

process EMBED_CELLS_GPU {
    tag "${meta.id} ${model}"
    label 'process_gpu'
    container 'ghcr.io/pertprobe/base:0.1.0'

    input:
    tuple val(meta), path(h5ad), val(model)

    output:
    tuple val(meta), val(model), path("*.embedding.h5ad"), emit: embedding
    path "versions.yml"                                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    embedCellsScript(task, meta, h5ad, model)

    stub:
    embedCellsStub(task, meta, model)
}
