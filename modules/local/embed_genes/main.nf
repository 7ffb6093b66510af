process EMBED_GENES {
    tag "${meta.id} ${source} ${split.task} seed${split.seed} fold${split.fold}"
    label 'process_single'

    input:
    tuple val(meta), path(pseudobulk), path(splits), val(split), val(source), path(table, stageAs: 'external/*'), path(compounds, stageAs: 'compounds/*')

    output:
    tuple val(meta), val(split), val(source), path("*.gene_embedding.parquet"), emit: embedding
    path "versions.yml"                                                                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}.${source}.${split.task}.seed${split.seed}.fold${split.fold}"
    def from   = table ? "${table} --name ${source}" : source
    def compound_arg = compounds ? "--compound-table ${compounds}" : ''
    """
    embed_genes.py \\
        --source ${from} \\
        --pseudobulk ${pseudobulk} \\
        --splits ${splits} \\
        --task ${split.task} \\
        --seed ${split.seed} \\
        --fold ${split.fold} \\
        ${compound_arg} \\
        --out ${prefix}.gene_embedding.parquet \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}.${source}.${split.task}.seed${split.seed}.fold${split.fold}"
    """
    touch ${prefix}.gene_embedding.parquet
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
